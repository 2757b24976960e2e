"""The monthly report: per province, unit or agency, as PDF and XLSX, made on a schedule by
`ioc serve` and on demand (API, `ioc report make`), stored in the database."""
