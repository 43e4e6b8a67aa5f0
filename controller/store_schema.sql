-- Schema of controller/store.py, as migrations. Each "-- migration N" section brings the database
-- from version N-1 to N in one transaction; store.py records N in meta.schema_version. Never edit a
-- released section: add a new one. Timestamps are ISO 8601 with the site's UTC offset; units are in
-- column names; signs follow the README (grid + import, battery + discharge).

-- migration 1
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Operator history: one row per cycle, or per `cycle_every` cycles (kW means over the group, last
-- state of charge, longest work, counts of overruns and errors).
CREATE TABLE cycles (
    id          INTEGER PRIMARY KEY,
    ts          TEXT    NOT NULL,  -- first cycle of the row
    n_cycles    INTEGER NOT NULL,
    grid_kw     REAL,              -- NULL: no meter reading
    pv_kw       REAL,
    battery_kw  REAL,
    load_kw     REAL,
    soc_pct     REAL,              -- capacity-weighted over the batteries read
    work_s      REAL    NOT NULL,
    overruns    INTEGER NOT NULL,
    errors      INTEGER NOT NULL
);

-- Quarter-hours (see controller/history.py for the integration rule). Exactly one open row; a
-- closed row never changes again.
CREATE TABLE history_15min (
    start_unix     INTEGER PRIMARY KEY CHECK (start_unix % 900 = 0),
    ts_start       TEXT    NOT NULL,
    samples        INTEGER NOT NULL,
    covered_s      REAL    NOT NULL CHECK (covered_s BETWEEN 0 AND 900),
    import_kwh     REAL    NOT NULL,
    export_kwh     REAL    NOT NULL,
    pv_kwh         REAL    NOT NULL,
    load_kwh       REAL    NOT NULL,
    charge_kwh     REAL    NOT NULL,
    discharge_kwh  REAL    NOT NULL,
    mean_grid_kw   REAL,
    max_grid_kw    REAL,
    mean_load_kw   REAL,
    max_load_kw    REAL,
    closed         INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX history_15min_one_open ON history_15min (closed) WHERE closed = 0;
CREATE TRIGGER history_15min_closed_is_final BEFORE UPDATE ON history_15min WHEN OLD.closed = 1
BEGIN
    SELECT RAISE(ABORT, 'history_15min: interval already closed');
END;

-- The last sample, whose hold is not yet attributed: with the open interval, all a restart needs.
CREATE TABLE history_cursor (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    ts          TEXT    NOT NULL,
    t_us        INTEGER NOT NULL,
    grid_kw     REAL,              -- all NULL: the sample had no meter reading
    pv_kw       REAL,
    battery_kw  REAL,
    load_kw     REAL
);

-- Every write the writer attempted.
CREATE TABLE setpoints (
    id      INTEGER PRIMARY KEY,
    ts      TEXT    NOT NULL,
    device  TEXT    NOT NULL,
    kind    TEXT    NOT NULL,      -- pv_limit_kw | battery_p_kw | load_shed
    value   REAL,                  -- kW; load_shed 1/0; NULL lifts a PV cap
    ok      INTEGER NOT NULL
);
-- The last accepted value per device and kind, kept by the trigger below in the same transaction.
CREATE TABLE setpoints_last (
    device  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    value   REAL,
    ts      TEXT NOT NULL,
    setpoint_id INTEGER NOT NULL,
    PRIMARY KEY (device, kind)
);
CREATE TRIGGER setpoints_track_last AFTER INSERT ON setpoints WHEN NEW.ok = 1
BEGIN
    INSERT OR REPLACE INTO setpoints_last (device, kind, value, ts, setpoint_id)
    VALUES (NEW.device, NEW.kind, NEW.value, NEW.ts, NEW.id);
END;

CREATE TABLE plans (
    id             INTEGER PRIMARY KEY,
    created_ts     TEXT    NOT NULL,
    strategy       TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    fallback       INTEGER NOT NULL,
    horizon_start  TEXT    NOT NULL,
    horizon_end    TEXT    NOT NULL,
    plan_json      TEXT    NOT NULL
);
CREATE TABLE current_plan (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    plan_id   INTEGER NOT NULL REFERENCES plans (id),
    since_ts  TEXT    NOT NULL
);

CREATE TABLE alarms (
    id          INTEGER PRIMARY KEY,
    code        TEXT NOT NULL,
    device      TEXT NOT NULL,     -- '' for the site as a whole
    message     TEXT NOT NULL,
    raised_ts   TEXT NOT NULL,
    cleared_ts  TEXT               -- NULL while active
);
CREATE UNIQUE INDEX alarms_one_active ON alarms (code, device) WHERE cleared_ts IS NULL;

-- Generic events (demand-response calls to come): an external id is recorded once per kind.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    external_id   TEXT,
    ts            TEXT NOT NULL,
    updated_ts    TEXT NOT NULL,
    payload_json  TEXT NOT NULL,
    state         TEXT NOT NULL
);
CREATE UNIQUE INDEX events_external ON events (kind, external_id);
CREATE INDEX events_kind_state ON events (kind, state);

-- migration 2
-- Demand-response evidence (dr/records.py): the baseline fixed for each event with every history
-- row it used, the programme terms it is judged by, and one row per quarter-hour of the event.
-- event_id is the grid company's id (events.external_id of kind 'dr').
CREATE TABLE dr_baselines (
    event_id           TEXT PRIMARY KEY,
    programme_id       TEXT NOT NULL,
    method             TEXT NOT NULL,     -- five_day | ten_in_ten | pre_event_15min
    computed_ts        TEXT NOT NULL,
    adjustment         REAL NOT NULL,     -- day-of factor (1 when the method has none)
    days_used_json     TEXT NOT NULL,
    inputs_json        TEXT NOT NULL,     -- [[slot start, mean grid kW], ...]: the history rows used
    spec_json          TEXT NOT NULL,     -- the event's intervals as assessed
    threshold          REAL NOT NULL,     -- response rate the event must reach
    price_cny_per_kwh  REAL NOT NULL,
    stopped_ts         TEXT               -- set when the event was cancelled while running
);
CREATE TABLE dr_baseline_slots (
    event_id     TEXT    NOT NULL REFERENCES dr_baselines (event_id),
    start_unix   INTEGER NOT NULL,
    ts_start     TEXT    NOT NULL,
    baseline_kw  REAL    NOT NULL,
    PRIMARY KEY (event_id, start_unix)
);
CREATE TABLE dr_intervals (
    event_id       TEXT    NOT NULL REFERENCES dr_baselines (event_id),
    start_unix     INTEGER NOT NULL,
    ts_start       TEXT    NOT NULL,
    baseline_kw    REAL    NOT NULL,
    actual_kw      REAL,               -- NULL: no meter reading in the quarter-hour
    delivered_kw   REAL,               -- baseline - actual
    delivered_kwh  REAL    NOT NULL,   -- scaled by the share of the slot inside the event
    committed_kw   REAL    NOT NULL,
    fraction       REAL    NOT NULL,   -- share of the slot inside the event
    battery_kwh    REAL    NOT NULL,   -- discharge - charge
    shed_kwh_json  TEXT    NOT NULL,   -- {"load id": kWh}
    complete       INTEGER NOT NULL,   -- 1: fully metered and observed by the ledger throughout
    PRIMARY KEY (event_id, start_unix)
);

-- migration 3
-- A write is journalled before it goes out (ok = -1: sent, outcome not known yet) and resolved after;
-- a controller killed in the middle of its writes leaves a row for every write a device may have taken.
CREATE TRIGGER setpoints_track_last_resolved AFTER UPDATE OF ok ON setpoints WHEN NEW.ok = 1
BEGIN
    INSERT OR REPLACE INTO setpoints_last (device, kind, value, ts, setpoint_id)
    VALUES (NEW.device, NEW.kind, NEW.value, NEW.ts, NEW.id);
END;
