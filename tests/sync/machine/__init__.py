"""The pieces of the two-way state machine (tests/sync/test_state_machine.py): its world
(stand-ins, calsync run the ways it runs), the user's model, a mail client's raw SOAP."""
