// A mail client built on ews-javascript-api (a port of Microsoft's EWS Managed API), used
// unmodified by calsync's end-to-end tests (tests/e2e/test_ews_js.py).
//
// Reads one JSON command a line on stdin and answers each with one JSON line on stdout:
// {"step": ..., "ok": true, "id": ..., "changeKey": ...} or {"step": ..., "ok": false,
// "error": ...}. Where it connects comes from the environment: EWS_URL, EWS_USER,
// EWS_PASSWORD (Basic), EWS_PROXY (an http:// proxy, through the library's own XhrApi
// proxy support) and TZ (the client's local zone, which the Managed API sends as its
// TimeZoneContext).
"use strict";

const readline = require("readline");
const ews = require("ews-javascript-api");

const { Appointment, ConflictResolutionMode, DateTime, DayOfTheWeek, DeleteMode,
  ExchangeService, ExchangeVersion, ItemId, Recurrence, SendCancellationsMode,
  SendInvitationsMode, SendInvitationsOrCancellationsMode, TimeZoneInfo, Uri,
  WebCredentials, WellKnownFolderName, XhrApi } = ews;

function service() {
  const s = new ExchangeService(ExchangeVersion.Exchange2016,
    TimeZoneInfo.FindSystemTimeZoneById(process.env.EWS_ZONE || "W. Europe Standard Time"));
  s.Url = new Uri(process.env.EWS_URL);
  s.Credentials = new WebCredentials(process.env.EWS_USER, process.env.EWS_PASSWORD);
  const xhr = new XhrApi({ rejectUnauthorized: true });
  if (process.env.EWS_PROXY) {
    xhr.useProxy(process.env.EWS_PROXY);
  }
  s.XHRApi = xhr;
  return s;
}

const at = (iso) => DateTime.Parse(iso);

function ids(item) {
  return { id: item.Id.UniqueId, changeKey: item.Id.ChangeKey };
}

function setFields(item, cmd) {
  if (cmd.subject !== undefined) item.Subject = cmd.subject;
  if (cmd.location !== undefined) item.Location = cmd.location;
  if (cmd.allDay !== undefined) item.IsAllDayEvent = cmd.allDay;
  if (cmd.start !== undefined) item.Start = at(cmd.start);
  if (cmd.end !== undefined) item.End = at(cmd.end);
  for (const address of cmd.required || []) item.RequiredAttendees.Add(address);
  for (const address of cmd.optional || []) item.OptionalAttendees.Add(address);
  if (cmd.weekly !== undefined) {
    const days = cmd.weekly.days.map((d) => DayOfTheWeek[d]);
    const pattern = new Recurrence.WeeklyPattern(at(cmd.weekly.start), cmd.weekly.interval || 1, days);
    pattern.NumberOfOccurrences = cmd.weekly.count;
    item.Recurrence = pattern;
  }
}

// Each step as a user of the Managed API writes it.
const steps = {
  async create(s, cmd) {
    const item = new Appointment(s);
    setFields(item, cmd);
    await item.Save(WellKnownFolderName.Calendar, SendInvitationsMode[cmd.send || "SendToNone"]);
    return ids(item);
  },
  async update(s, cmd) {
    const item = await Appointment.Bind(s, new ItemId(cmd.id));
    setFields(item, cmd);
    await item.Update(ConflictResolutionMode.AutoResolve,
      SendInvitationsOrCancellationsMode[cmd.send || "SendToNone"]);
    return ids(item);
  },
  // The Nth occurrence of a series, bound through its OccurrenceItemId: its own ItemId.
  async occurrence(s, cmd) {
    const item = await Appointment.BindToOccurrence(s, new ItemId(cmd.id), cmd.index);
    return { ...ids(item), start: item.Start.ToISOString(), end: item.End.ToISOString() };
  },
  async delete(s, cmd) {
    const item = await Appointment.Bind(s, new ItemId(cmd.id));
    await item.Delete(DeleteMode[cmd.mode], SendCancellationsMode[cmd.send || "SendToNone"]);
    return { id: cmd.id };
  },
  async get(s, cmd) {
    const item = await Appointment.Bind(s, new ItemId(cmd.id));
    return { ...ids(item), subject: item.Subject };
  },
};

function describe(error) {
  if (error && error.message) return String(error.message);
  if (error && error.status) return `HTTP ${error.status}`;
  return String(error);
}

async function main() {
  const s = service();
  const lines = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let cmd = {};
    let answer;
    try {
      cmd = JSON.parse(line);
      const step = steps[cmd.step];
      if (!step) throw new Error(`unknown step ${cmd.step}`);
      answer = { step: cmd.step, ok: true, ...(await step(s, cmd)) };
    } catch (error) {
      answer = { step: cmd.step, ok: false, error: describe(error) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  }
}

main().catch((error) => {
  process.stderr.write(`${describe(error)}\n`);
  process.exit(1);
});
