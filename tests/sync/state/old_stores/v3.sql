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
INSERT INTO "channels" VALUES('chan1','alice@example.com','res1',X'6741414141414272446243755731687539426F77624E6D75774357704E4976683733497030395F375839445574745F4636323368786D7A58765F42645067596F533855623951633339767749773066334B766C37325F324D755346465F6D70323558375355346F465836644B785272586E32776F446D413D','https://x/push','primary',2000000000.0,108.0);
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
INSERT INTO "items" VALUES('alice@example.com','ITEM1','gevent1','CK1','"etag1"','hash1',X'67414141414142724462437558374434774D662D6C41525670455662705757636E686F68386B2D49486C5A44305471312D46727472544C67544C446E336C5130564D75546A3046534A7846797A7A4A3939753741706C76396E45625170414E7759545F43706561344A736D4955446C386478506C64383167642D354F5861706F7A563859414D344E57713571',101.0);
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
INSERT INTO "meta" VALUES('schema_version','3');
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
INSERT INTO "outbox" VALUES(2,'alice@example.com','ITEM2','upsert',NULL,X'67414141414142724462437530464449576C4E594B496F345474785F4E4C4736336A41746855514D656C445F59565F616877616F55486C514C4845734C6A394239514E5743413467645A6E4767444436475151594B694E6E5252484B5A584A69474470306678677A5851497045727358566D667356327759644F554A55506A306B4F5462645A456437355475',1,104.0,'Google 400 invalid','quarantined',103.0);
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
