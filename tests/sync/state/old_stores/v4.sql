BEGIN TRANSACTION;
CREATE TABLE "channels" (
   "channel_id" TEXT PRIMARY KEY,
   "mailbox" TEXT,
   "resource_id" TEXT,
   "token" BLOB,
   "address" TEXT,
   "calendar_id" TEXT,
   "expiration" REAL,
   "created_at" REAL
);
INSERT INTO "channels" VALUES('chan1','alice@example.com','res1',X'67414141414142724462437555587061736F77734E47494C47375451645A6C6D644B3873465156464470382D7148563659304C695F4F736E59645A77504E456B644A345737707149664148322D6C5873684B6D53756648764A4B546C583238556E6D453559703454326836683337324458556B525130303D','https://x/push','primary',2000000000.0,108.0);
CREATE TABLE "conflicts" (
   "id" INTEGER PRIMARY KEY,
   "mailbox" TEXT,
   "ews_item_id" TEXT,
   "google_event_id" TEXT,
   "field" TEXT,
   "winner" TEXT,
   "reason" TEXT,
   "at" REAL
);
INSERT INTO "conflicts" VALUES(1,'alice@example.com','ITEM1','gevent1','location','google','policy',107.0);
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
INSERT INTO "items" VALUES('alice@example.com','ITEM1','gevent1','CK1','"etag1"','hash1',X'6741414141414272446243756B4631454E536D33646E68466C6D774A30785376425076366C584433364E4D786255444E335757456B5A74374F54434149713163335079536375417251693754643670654B794254333168487354346C637858455341564C7071536866796D4B4B50446B77517661734B572D6F4A6F4C6838527A43703276785F5A46666E4C32',101.0);
CREATE TABLE "journal" (
   "mailbox" TEXT,
   "side" TEXT,
   "key" TEXT,
   "version" TEXT,
   "content_hash" TEXT,
   "at" REAL,
   PRIMARY KEY ("mailbox", "side", "key", "version")
);
INSERT INTO "journal" VALUES('alice@example.com','google','gevent1','"etag1"','hash1',106.0);
CREATE TABLE "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
INSERT INTO "meta" VALUES('schema_version','4');
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
INSERT INTO "outbox" VALUES(2,'alice@example.com','ITEM2','upsert',NULL,X'674141414141427244624375744E6A5567722D523561794838435130586D377A3465734C4F333650386F556A6C6772794F51483764456C506C4A597841694B7A7762314C48626B49315661505A4C5A515858753341373347473439482D3868364C307770764E75375F7A41564B6E78385F7A50474D7634587244665852397775326A694333755750504B4D33',1,104.0,'Google 400 invalid','quarantined',103.0);
CREATE TABLE "run_writes" (
   "id" INTEGER PRIMARY KEY,
   "run_id" INTEGER REFERENCES "runs"("id"),
   "side" TEXT,
   "op" TEXT,
   "key" TEXT,
   "other_key" TEXT,
   "version" TEXT,
   "before" BLOB,
   "fields" BLOB,
   "at" REAL
);
INSERT INTO "run_writes" VALUES(1,1,'google','patch','gevent1','ITEM1','"etag2"',X'674141414141427244624375345F79394745557973753368626A484744736735636D7A754A4D4271326C434A304A5A2D5574334D4630767035483230304B4C31732D4839695333626C655F42365F516A7638344E68785261375A4C77432D646D5644363754723165366B632D374E6842567A707559737345365969566456563145376732486D526E304C7448',X'6741414141414272446243754A73434244394E574770654553716D584E74504D4238574A6C425972686E547235304A4B424973685774375F756E4550545445764153354F52546A5A462D6B4F2D487476736B694E62634162526E5137314233725F56356952714966454D57705358764457675830644E733D',110.0);
CREATE TABLE "runs" (
   "id" INTEGER PRIMARY KEY,
   "mailbox" TEXT,
   "started_at" REAL,
   "finished_at" REAL,
   "undone_at" REAL
);
INSERT INTO "runs" VALUES(1,'alice@example.com',109.0,111.0,NULL);
CREATE TABLE "seen_items" (
   "mailbox" TEXT,
   "item_id" TEXT,
   "item_class" TEXT,
   PRIMARY KEY ("mailbox", "item_id")
);
INSERT INTO "seen_items" VALUES('alice@example.com','ITEM1','CalendarItem');
INSERT INTO "seen_items" VALUES('alice@example.com','MAIL1','Message');
CREATE TABLE "sync_state" (
   "mailbox" TEXT PRIMARY KEY,
   "google_sync_token" TEXT,
   "ews_sync_state" TEXT,
   "last_google_sync" REAL,
   "last_exchange_sync" REAL,
   "last_error" TEXT
);
INSERT INTO "sync_state" VALUES('alice@example.com','gtoken','ewsstate',105.0,NULL,NULL);
CREATE UNIQUE INDEX "idx_items_mailbox_google_event_id"
    ON "items" ("mailbox", "google_event_id");
CREATE INDEX "idx_outbox_state_mailbox_ews_item_id_id"
    ON "outbox" ("state", "mailbox", "ews_item_id", "id");
CREATE INDEX "idx_runs_mailbox_id"
    ON "runs" ("mailbox", "id");
CREATE INDEX "idx_run_writes_run_id_id"
    ON "run_writes" ("run_id", "id");
COMMIT;
