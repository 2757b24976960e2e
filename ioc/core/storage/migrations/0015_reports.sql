-- The monthly reports: one row per (month, area, agency, language), the PDF and the XLSX
-- kept in the row (bytea) beside their SHA-256. In the database rather than in a directory
-- because several `ioc serve` nodes answer the same API: a file one node wrote would be
-- missing on the others without shared storage, and the row, its files and its checksums
-- commit (and are backed up) together. A report is a few hundred kilobytes, a dozen a month.
CREATE TABLE reports (
    id          bigserial PRIMARY KEY,
    month       date NOT NULL CHECK (extract(day FROM month) = 1),
    area        text NOT NULL,
    agency      text,              -- NULL: the area's report; else that agency's own
    lang        text NOT NULL CHECK (lang IN ('vi', 'en')),
    made_by     text NOT NULL,     -- 'schedule' or the user (cli:<user> from the command)
    made_at     timestamptz NOT NULL DEFAULT now(),
    build_ms    integer NOT NULL,
    pdf         bytea NOT NULL,
    pdf_sha256  text NOT NULL,
    xlsx        bytea NOT NULL,
    xlsx_sha256 text NOT NULL
);
-- one report per month, area, agency and language: a second node's scheduled run, or a
-- request made again, finds the row instead of adding another
CREATE UNIQUE INDEX reports_one ON reports (month, area, coalesce(agency, ''), lang);
CREATE INDEX reports_agency ON reports (agency, month DESC);
