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
INSERT INTO "channels" VALUES('chan1','alice@example.com','res1',X'674141414141427244624375544B2D416F725F626B646A3373335534374F32447634506B44554B78766F745879635864514C55652D4D356B375930645A5547495F32792D57446D726E3577634430315542726F6434444E7061363149383876485334744A45484E364266766441596D4E74624D377756733D','https://x/push','primary',2000000000.0,108.0);
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
   "updated_at" REAL, "reconciled_at" REAL,
   PRIMARY KEY ("mailbox", "ews_item_id")
);
INSERT INTO "items" VALUES('alice@example.com','ITEM1','gevent1','CK1','"etag1"','hash1',X'6741414141414272446243754F5A68416F624456386736646C5047514972415F666941665341614B7645636D586674414E673357394C7749777642426D6D764B6B4E5144685F4C4F537065672D387971524645496A73617733566571397632565F756C505831585A6D717347454731374D5A6F3337565F69337964594877577045457A576D6B376739347743',101.0,NULL);
INSERT INTO "items" VALUES('alice@example.com','ITEM3','gevent3','CK3','"etag3"','h3',X'6741414141414272446243754F585162534937386A5F615F3459476D72374B735169343656472D3674786C497365534E57586F5261575149304F4A416459534745726F73695A5448666536454B68555269633239616446744274306D347A6A7361413D3D',112.0,112.0);
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
INSERT INTO "meta" VALUES('schema_version','5');
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
INSERT INTO "outbox" VALUES(2,'alice@example.com','ITEM2','upsert',NULL,X'674141414141427244624375364F424D7477674C695756464A663477303562686A6F777135584743593237454472567165494270444E5F724845786B793670475932764439746F5F554C695252616B6F65615366685F704744655F4E4955584E654E743870616C54556D6E50436741756B69684B556A4A385150716778655061654A646C2D614843474D5741',1,104.0,'Google 400 invalid','quarantined',103.0);
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
INSERT INTO "run_writes" VALUES(1,1,'google','patch','gevent1','ITEM1','"etag2"',X'674141414141427244624375736D6F59706D7364527A57456B6F6D59594B684A52323846314B7847307A5153436E5F3838357561454169455A7638316E71794B37727068322D615F3531615A535368346457755067796B2D50574E37764F4A4F48794844715F624A535433304446494A4D6D466762364256704D756447657130456868594D664F5841642D63',X'67414141414142724462437532547244686557496948427761376B774E55755638426B6831785363474C4A77456A4872476948464765634A6F78797A766E724D32625054574C555A6D58516D734B305364314169634E3879415533714870614C5A446E7851676566304969715258724C717056326C6E383D',110.0);
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
   "item_class" TEXT, "master_id" TEXT,
   PRIMARY KEY ("mailbox", "item_id")
);
INSERT INTO "seen_items" VALUES('alice@example.com','ITEM1','CalendarItem',NULL);
INSERT INTO "seen_items" VALUES('alice@example.com','MAIL1','Message',NULL);
INSERT INTO "seen_items" VALUES('alice@example.com','OCC1','CalendarItem','ITEM1');
CREATE TABLE "sync_state" (
   "mailbox" TEXT PRIMARY KEY,
   "google_sync_token" TEXT,
   "ews_sync_state" TEXT,
   "last_google_sync" REAL,
   "last_exchange_sync" REAL,
   "last_error" TEXT
, "last_error_at" REAL, "past_error" TEXT, "past_error_at" REAL, "error_resolved_at" REAL);
INSERT INTO "sync_state" VALUES('alice@example.com','gtoken','ewsstate',105.0,NULL,'Google 503 backendError',113.0,NULL,NULL,NULL);
CREATE UNIQUE INDEX "idx_items_mailbox_google_event_id"
    ON "items" ("mailbox", "google_event_id");
CREATE INDEX "idx_outbox_state_mailbox_ews_item_id_id"
    ON "outbox" ("state", "mailbox", "ews_item_id", "id");
CREATE INDEX "idx_runs_mailbox_id"
    ON "runs" ("mailbox", "id");
CREATE INDEX "idx_run_writes_run_id_id"
    ON "run_writes" ("run_id", "id");
COMMIT;
