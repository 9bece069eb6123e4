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
INSERT INTO "channels" VALUES('chan1','alice@example.com','res1',X'6741414141414272446C324F4D495178365F54587152757A4B4F5F34614442764258546646536457574971596E5070477154436345485A6F427941526B4A5F5575454C57434A513858746A686E526763636E7576676345455A5A4532544A38712D50473478665A755F6C3038654A6C4775524D6B674D453D','https://x/push','primary',2000000000.0,108.0);
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
INSERT INTO "items" VALUES('alice@example.com','ITEM1','gevent1','CK1','"etag1"','hash1',X'6741414141414272446C324F316C765441337932706A36462D677A39524150334262426C44652D6D37465F55415245736B5232504539307A71724365394E744F4D726B68364E382D563933354854344A5833444744353678516A645A74417943476A6B2D383069756778747269524347616F704C79795363614C53634D336748675F6A41484E6E736D444A59',101.0,NULL);
INSERT INTO "items" VALUES('alice@example.com','ITEM3','gevent3','CK3','"etag3"','h3',X'6741414141414272446C324F55474546517630723333586A77747A4830324858655A377574524457576979794B4468754837653050656832427A503342676A6A3578577A4D6F35356745496A7170365146667039573141783755492D676C6A7369773D3D',112.0,112.0);
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
CREATE TABLE "leases" (
   "mailbox" TEXT PRIMARY KEY,
   "holder" TEXT,
   "fence" INTEGER,
   "expires_at" REAL
);
INSERT INTO "leases" VALUES('alice@example.com','node-1',1,144.0);
CREATE TABLE "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
INSERT INTO "meta" VALUES('schema_version','6');
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
, "claimed_by" TEXT, "claim_until" REAL);
INSERT INTO "outbox" VALUES(1,'alice@example.com','ITEM1','update','CK2',NULL,0,102.0,NULL,'pending',102.0,NULL,NULL);
INSERT INTO "outbox" VALUES(2,'alice@example.com','ITEM2','upsert',NULL,X'6741414141414272446C324F6C30585A5462344856634F69625842525946793166364553796779584E596C6F6E2D5639486F6A634A34467147436554324A66345A3641635A4B766B787A71445834462D695062746331447171795438767834344F767634754D517233327671736545624D424B78386B596C4F3568736B456A6B384B71416436455573415455',1,104.0,'Google 400 invalid','quarantined',103.0,NULL,NULL);
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
INSERT INTO "run_writes" VALUES(1,1,'google','patch','gevent1','ITEM1','"etag2"',X'6741414141414272446C324F76676C6F455070624C42576630496E3166644B554F78555442434A6678646A74673551665477746A44774A4C446254717A42465041435F435635494664693174564E6C677270525343752D53437174654B4E747167785361455A775775376B4B7142344B79506C464535652D725F6F754A5247314D5442304B5256496B527337',X'6741414141414272446C324F635F586E7456333163743330593150754A303436764932717454334232704135433764577256376A6952752D644332654C374A596C3633565431594451356A676A5469666C3537494E5F53497776506756545134735A415F386D49615477566D646B6A542D494663586E453D',110.0);
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
CREATE INDEX "idx_journal_at"
    ON "journal" ("at");
COMMIT;
