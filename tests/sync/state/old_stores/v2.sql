BEGIN TRANSACTION;
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
INSERT INTO "items" VALUES('alice@example.com','ITEM1','gevent1','CK1','"etag1"','hash1',X'674141414141427244624375435932687569657178636573427872356E7A66374133537651754D647861347651333051434F52426573736148414E746F63724A5941576C4E58455A59313633547168485456735964594C5A482D4C67734231704C71425630505238764859576950733950773646777A4C4C72546330464F366B4E4D5F7A59466C426A7A3244',101.0);
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
INSERT INTO "meta" VALUES('schema_version','2');
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
INSERT INTO "outbox" VALUES(2,'alice@example.com','ITEM2','upsert',NULL,X'674141414141427244624375435449444E756A45496E426F59424249667773703830754968517969664D7169414767324363326D4F744E2D7336736B4351722D494C73797643664D687248586D6B6C74376C397531613552306753387A5F69566148344B734E3037474570674D32754953445334714375755A6D396456537A716A62315430386256674F2D58',1,104.0,'Google 400 invalid','quarantined',103.0);
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
COMMIT;
