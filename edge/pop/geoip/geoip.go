// Package geoip answers geolocation lookups from MaxMind-format database
// files (the MaxMind DB format, .mmdb: GeoLite2 and GeoIP2 from MaxMind,
// IP to City/Country/ASN Lite from DB-IP), in the shape of Fastly's
// geolocation records (Record), for the POP's fastly_geo.lookup.
//
// A DB holds at most one location database (City or Country) and one ASN
// database, told apart by the database_type of their metadata; a lookup
// combines what both hold for the address. Each file is read whole into
// memory and checked (the reader's Verify) before it is used, so a file
// rewritten in place while it is in use cannot crash the POP, and a
// malformed or truncated one is refused with the reason: at Open, which
// fails; on reload, which keeps the database in use and says so
// (Degraded).
//
// Files are reloaded when they change (Reload, which Watch calls
// periodically): a changed size or modification time is loaded once it
// has stayed the same across two checks, so a copy still being written is
// not loaded half-way. A weekly GeoLite2 update thus takes effect without
// a restart.
//
// Nothing here knows of wazero or of the manifest's geolocation table;
// the pop package answers from the manifest first.
package geoip

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Kind is what a database file holds.
type Kind int

const (
	Location Kind = iota // City or Country: country, region, city, coordinates, time zone
	ASN                  // autonomous system number and organisation
)

func (k Kind) String() string {
	if k == ASN {
		return "asn"
	}
	return "location"
}

// kindOf tells a database's kind from its metadata's database_type:
// GeoLite2-City, GeoLite2-Country, GeoIP2-City, GeoIP2-Country,
// GeoIP2-Enterprise, DBIP-City-Lite, DBIP-Country-Lite and DB-IP's
// Location databases hold locations; GeoLite2-ASN, GeoIP2-ISP and
// DBIP-ASN-Lite autonomous systems. Others (Anonymous-IP,
// Connection-Type, Domain, ...) hold neither.
func kindOf(dbType string) (Kind, bool) {
	t := strings.ToLower(dbType)
	for _, w := range []string{"city", "country", "enterprise", "location"} {
		if strings.Contains(t, w) {
			return Location, true
		}
	}
	for _, w := range []string{"asn", "isp"} {
		if strings.Contains(t, w) {
			return ASN, true
		}
	}
	return 0, false
}

// reader is one loaded version of a file.
type reader struct {
	db    *maxminddb.Reader
	stamp stamp
}

// stamp identifies a version of a file cheaply.
type stamp struct{ size, mtime int64 }

func statFile(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.Size(), fi.ModTime().UnixNano()}, nil
}

// file is one database file and the version of it in use.
type file struct {
	path string
	kind Kind
	cur  atomic.Pointer[reader]

	// Reload state (DB.mu).
	seen    stamp // the stamp at the last check, not yet loaded
	failed  stamp // the stamp whose load failed, not tried again
	failure string
}

// DB answers lookups from a location database, an ASN database, or both.
// Its methods are safe for concurrent use.
type DB struct {
	log   *slog.Logger
	files []*file // at most one of each Kind

	mu sync.Mutex // reload state

	found, notFound, decodeErrors atomic.Uint64
	reloads, reloadFailures       atomic.Uint64
}

// maxFileSize bounds what is read into memory, well above the size of
// any City or ASN database MaxMind or DB-IP publish.
const maxFileSize = 2 << 30

// load reads and checks the database at path. want, if not nil, is the
// kind it must have (a reload may not change it).
func load(path string, want *Kind) (*reader, Kind, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxFileSize {
		return nil, 0, fmt.Errorf("%s: %d bytes; larger than any geolocation database (limit %d)", path, fi.Size(), maxFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	r, kind, err := open(data)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	if want != nil && kind != *want {
		return nil, 0, fmt.Errorf("%s: now a %s database (%s), was a %s one", path, kind, r.Metadata.DatabaseType, *want)
	}
	return &reader{db: r, stamp: stamp{fi.Size(), fi.ModTime().UnixNano()}}, kind, nil
}

// open checks the bytes of a database file and tells its kind.
func open(data []byte) (*maxminddb.Reader, Kind, error) {
	if len(data) == 0 {
		return nil, 0, errors.New("empty file; want a MaxMind DB (.mmdb) file")
	}
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return nil, 0, fmt.Errorf("not a valid MaxMind DB (.mmdb) file: %w", err)
	}
	kind, ok := kindOf(r.Metadata.DatabaseType)
	if !ok {
		return nil, 0, fmt.Errorf("database type %q holds neither locations nor autonomous systems; want a City, Country or ASN database (GeoLite2-City, GeoLite2-Country, GeoLite2-ASN or DB-IP's equivalents)", r.Metadata.DatabaseType)
	}
	if err := r.Verify(); err != nil {
		return nil, 0, fmt.Errorf("corrupt or truncated %s database: %w", r.Metadata.DatabaseType, err)
	}
	return r, kind, nil
}

// Open loads the database files at paths: at most one location (City or
// Country) and one ASN database. Any that cannot be read or checked, is of
// another kind, or duplicates a kind fails Open with the reason.
func Open(paths []string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.Default()
	}
	db := &DB{log: log}
	for _, p := range paths {
		r, kind, err := load(p, nil)
		if err != nil {
			return nil, fmt.Errorf("geolocation database %w", err)
		}
		for _, f := range db.files {
			if f.kind == kind {
				return nil, fmt.Errorf("geolocation databases %s and %s are both %s databases; give one City or Country database and one ASN database", f.path, p, kind)
			}
		}
		f := &file{path: p, kind: kind}
		f.cur.Store(r)
		db.files = append(db.files, f)
		log.Info("geolocation database loaded", "path", p, "type", r.db.Metadata.DatabaseType, "kind", kind.String(),
			"built", r.db.Metadata.BuildTime().UTC().Format(time.DateOnly))
	}
	return db, nil
}

// Lookup returns Fastly's geolocation record for addr as JSON, or nil if
// no database has anything for it (private and reserved addresses, or an
// address outside the databases). A record that fails to decode counts as
// nothing found, and is counted.
func (db *DB) Lookup(addr netip.Addr) []byte {
	rec, ok := db.Record(addr, time.Now())
	if !ok {
		return nil
	}
	return rec.JSON()
}

// Record is Lookup's record before encoding, at time now (for the UTC
// offset).
func (db *DB) Record(addr netip.Addr, now time.Time) (Record, bool) {
	addr = addr.Unmap().WithZone("")
	var (
		loc     locationRecord
		asn     asnRecord
		locp    *locationRecord
		asnp    *asnRecord
		decoded bool
	)
	for _, f := range db.files {
		r := f.cur.Load()
		res := r.db.Lookup(addr)
		if !res.Found() {
			if res.Err() != nil {
				db.decodeErrors.Add(1)
			}
			continue
		}
		var err error
		if f.kind == Location {
			if err = res.Decode(&loc); err == nil {
				locp = &loc
			}
		} else if err = res.Decode(&asn); err == nil {
			asnp = &asn
		}
		if err != nil {
			db.decodeErrors.Add(1)
			continue
		}
		decoded = true
	}
	if !decoded {
		db.notFound.Add(1)
		return Record{}, false
	}
	db.found.Add(1)
	return newRecord(locp, asnp, now), true
}

// Reload checks each file and loads a changed one whose size and
// modification time have stayed the same since the previous check. A
// file that cannot be loaded leaves the version in use in place; the
// failure is logged once per version of the file and shown by Degraded
// until a good version loads.
func (db *DB) Reload() {
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, f := range db.files {
		st, err := statFile(f.path)
		cur := f.cur.Load()
		switch {
		case err != nil:
			f.seen = stamp{}
			if f.failure == "" {
				db.reloadFailures.Add(1)
				f.failure = err.Error()
				db.log.Warn("geolocation database cannot be read; still using the one loaded", "path", f.path, "err", err)
			}
			continue
		case st == cur.stamp:
			f.seen, f.failure = stamp{}, ""
			continue
		case st == f.failed:
			continue
		case st != f.seen:
			f.seen = st // changed: load once it stops changing
			continue
		}
		kind := f.kind
		r, _, err := load(f.path, &kind)
		if err != nil {
			db.reloadFailures.Add(1)
			f.failed, f.failure = st, err.Error()
			db.log.Error("geolocation database update not loaded; still using the one loaded", "path", f.path, "err", err)
			continue
		}
		f.cur.Store(r)
		f.seen, f.failed, f.failure = stamp{}, stamp{}, ""
		db.reloads.Add(1)
		db.log.Info("geolocation database reloaded", "path", f.path, "type", r.db.Metadata.DatabaseType,
			"built", r.db.Metadata.BuildTime().UTC().Format(time.DateOnly))
	}
}

// Watch calls Reload every interval until stop is closed.
func (db *DB) Watch(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			db.Reload()
		case <-stop:
			return
		}
	}
}

// Degraded lists the files whose update could not be loaded, one line
// each: lookups still answer from the version loaded before.
func (db *DB) Degraded() []string {
	db.mu.Lock()
	defer db.mu.Unlock()
	var out []string
	for _, f := range db.files {
		if f.failure != "" {
			out = append(out, fmt.Sprintf("geolocation database %s: update not loaded (%s); using the version built %s",
				f.path, f.failure, f.cur.Load().db.Metadata.BuildTime().UTC().Format(time.DateOnly)))
		}
	}
	return out
}

// WritePrometheus writes the lookup and reload counters and each
// database's build time in the Prometheus text format.
func (db *DB) WritePrometheus(w io.Writer) {
	const lk = "edgepixel_pop_geoip_lookups_total"
	fmt.Fprintf(w, "# HELP %s Geolocation lookups answered from the databases (--geoip-db), by result.\n# TYPE %s counter\n", lk, lk)
	fmt.Fprintf(w, "%s{result=\"found\"} %d\n%s{result=\"not_found\"} %d\n%s{result=\"decode_error\"} %d\n",
		lk, db.found.Load(), lk, db.notFound.Load(), lk, db.decodeErrors.Load())
	const rl = "edgepixel_pop_geoip_reloads_total"
	fmt.Fprintf(w, "# HELP %s Changed geolocation database files loaded, or refused (the previous version stays in use).\n# TYPE %s counter\n", rl, rl)
	fmt.Fprintf(w, "%s{result=\"ok\"} %d\n%s{result=\"failed\"} %d\n", rl, db.reloads.Load(), rl, db.reloadFailures.Load())
	const bt = "edgepixel_pop_geoip_build_timestamp_seconds"
	fmt.Fprintf(w, "# HELP %s When the geolocation database in use was built, by kind.\n# TYPE %s gauge\n", bt, bt)
	for _, f := range db.files {
		fmt.Fprintf(w, "%s{kind=%q} %d\n", bt, f.kind.String(), f.cur.Load().db.Metadata.BuildEpoch)
	}
}
