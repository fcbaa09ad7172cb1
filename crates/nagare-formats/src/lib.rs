//! Parsers and formatters (json, regexp, ltsv, csv, tsv, syslog, apache, nginx, msgpack, out_file...).
