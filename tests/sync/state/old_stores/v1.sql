BEGIN TRANSACTION;
CREATE TABLE "folders" (
   "mailbox" TEXT,
   "folder_id" TEXT,
   "role" TEXT,
   PRIMARY KEY ("mailbox", "folder_id")
);
INSERT INTO "folders" VALUES('alice@example.com','CAL','calendar');
INSERT INTO "folders" VALUES('alice@example.com','DEL','deleteditems');
CREATE TABLE "items" (
   "mailbox" TEXT,
   "ews_item_id" TEXT,
   "google_event_id" TEXT,
   "ews_change_key" TEXT,
   "google_etag" TEXT,
   "content_hash" TEXT,
   "snapshot" BLOB,
   "updated_at" REAL,
   PRIMARY KEY ("mailbox", "ews_item_id")
);
INSERT INTO "items" VALUES('alice@example.com','ITEM1','gevent1','CK1','"etag1"','hash1',X'67414141414142724462437570734A794579385A777232466A625748664C57497A316E71693672624F6A6A68317363564C36686F714830646161374B54666F433344414D5A7362383842394376326D76686C6F2D754B45486D5A79674457763936464E786352386A6C69754B304B48325F3564527442637638433857423557427965665555554C3651783253',101.0);
CREATE TABLE "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
INSERT INTO "meta" VALUES('schema_version','1');
CREATE TABLE "outbox" (
   "id" INTEGER PRIMARY KEY,
   "mailbox" TEXT,
   "ews_item_id" TEXT,
   "op" TEXT,
   "change_key" TEXT,
   "payload" BLOB,
   "attempts" INTEGER,
   "next_attempt_at" REAL,
   "last_error" TEXT,
   "state" TEXT,
   "created_at" REAL
);
INSERT INTO "outbox" VALUES(1,'alice@example.com','ITEM1','update','CK2',NULL,0,102.0,NULL,'pending',102.0);
INSERT INTO "outbox" VALUES(2,'alice@example.com','ITEM2','upsert',NULL,X'67414141414142724462437535387345756C59736E6B4D7565524A6F30795A4D4933725759614B325474655748435F67414664364A3137375865736C32376252586A70334465583942505332393059554B33754F337A4A507A51496337766D334C2D334D47756A384645546D3579535444516E33626C4F7765724357314E38506F62476B725F614D45487568',1,104.0,'Google 400 invalid','quarantined',103.0);
CREATE TABLE "seen_items" (
   "mailbox" TEXT,
   "item_id" TEXT,
   "item_class" TEXT,
   PRIMARY KEY ("mailbox", "item_id")
);
INSERT INTO "seen_items" VALUES('alice@example.com','ITEM1','CalendarItem');
INSERT INTO "seen_items" VALUES('alice@example.com','MAIL1','Message');
CREATE UNIQUE INDEX "idx_items_mailbox_google_event_id"
    ON "items" ("mailbox", "google_event_id");
CREATE INDEX "idx_outbox_state_mailbox_ews_item_id_id"
    ON "outbox" ("state", "mailbox", "ews_item_id", "id");
COMMIT;
