-- The schema edgepixel's aggregator created before numbered migrations
-- (git main at 5fbb671, clickhouse.Schema), {db} for the database.
-- Statements end with a line holding only ";".
CREATE DATABASE IF NOT EXISTS {db}
;
CREATE TABLE IF NOT EXISTS {db}.events (
		event_id UUID,
		ts DateTime,
		ts_ms UInt64,
		site String,
		name String,
		url String,
		referrer String,
		user_agent String,
		client_ip String,
		country String,
		utm_source String,
		utm_medium String,
		utm_campaign String,
		pop String,
		props String
	) ENGINE = ReplacingMergeTree
	PARTITION BY toYYYYMMDD(ts)
	ORDER BY (site, ts, event_id)
;
CREATE TABLE IF NOT EXISTS {db}.events_per_minute (
		site String,
		minute DateTime,
		n UInt64
	) ENGINE = SummingMergeTree(n)
	PARTITION BY toYYYYMM(minute)
	ORDER BY (site, minute)
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_per_minute_mv TO {db}.events_per_minute AS
	SELECT site, toStartOfMinute(ts) AS minute, count() AS n
	FROM {db}.events GROUP BY site, minute
;
CREATE TABLE IF NOT EXISTS {db}.bad_rows (
		row_id UUID,
		received DateTime,
		received_ms UInt64,
		source String,
		site String,
		reason String,
		error String,
		raw String
	) ENGINE = ReplacingMergeTree
	PARTITION BY toYYYYMMDD(received)
	ORDER BY (reason, row_id)
;
