package store

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The names Backup gives its copy in the backup directory. A SQLite copy is
// named like the live database, so the backup directory is a data directory.
const (
	SQLiteFile   = "civstack.db"
	PostgresDump = "civstack.pgdump"
)

// BackupOptions shape Backup.
type BackupOptions struct {
	// PgDump is the pg_dump program for a PostgreSQL database; empty means
	// "pg_dump" found on PATH. Its major version must be at least the
	// server's.
	PgDump string
}

// ErrNoPgDump means PostgreSQL's dump program could not be found.
var ErrNoPgDump = errors.New("pg_dump not found: install PostgreSQL's client programs (Debian: apt install postgresql-client) or give its path")

// Backup writes a consistent copy of the whole database into dir (which must
// exist) while other processes go on reading and writing, and returns the
// copy's path. On SQLite the copy is a database file (SQLiteFile, made by
// VACUUM INTO inside one read transaction; writers are not blocked); on
// PostgreSQL it is pg_dump's custom-format archive (PostgresDump, one
// snapshot; restore it with pg_restore). The file appears under its name
// only once complete; a failed backup leaves nothing behind.
func (db *DB) Backup(ctx context.Context, dir string, o BackupOptions) (string, error) {
	name := SQLiteFile
	if db.dialect == Postgres {
		name = PostgresDump
	}
	final := filepath.Join(dir, name)
	tmp := final + ".partial"
	os.Remove(tmp) // one a crashed backup left
	var err error
	if db.dialect == Postgres {
		err = db.pgDump(ctx, tmp, o.PgDump)
	} else {
		err = db.vacuumInto(ctx, tmp)
	}
	if err == nil { // the copy holds personal data: its owner's alone
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return final, nil
}

// vacuumInto copies the SQLite database into path through a connection of
// its own (the read pool is query-only, and the writer must stay free).
func (db *DB) vacuumInto(ctx context.Context, path string) error {
	src := filepath.Join(db.dir, SQLiteFile)
	c, err := sql.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer c.Close()
	c.SetMaxOpenConns(1)
	if _, err := c.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("copy %s: %s", src, rootCause(err))
	}
	return nil
}

// pgDump runs pg_dump into path. The password travels in PGPASSWORD, not on
// the command line where other users of the machine could read it.
func (db *DB) pgDump(ctx context.Context, path, prog string) error {
	if prog == "" {
		prog = "pg_dump"
	}
	bin, err := exec.LookPath(prog)
	if err != nil {
		return ErrNoPgDump
	}
	u, err := url.Parse(db.url)
	if err != nil {
		return fmt.Errorf("%w: --db must be a postgres:// URL", ErrUnavailable)
	}
	env := os.Environ()
	if u.User != nil {
		if pass, ok := u.User.Password(); ok {
			env = append(env, "PGPASSWORD="+pass)
			u.User = url.User(u.User.Username())
		}
	}
	cmd := exec.CommandContext(ctx, bin, "--format=custom", "--file="+path, "--dbname="+u.String())
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %s", filepath.Base(bin), lastLine(stderr.String(), err))
	}
	return nil
}

// lastLine is the last non-empty line a program wrote to stderr, or err's
// text when it wrote none.
func lastLine(s string, err error) string {
	line := ""
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			line = t
		}
	}
	if line == "" {
		return err.Error()
	}
	return line
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// CopyInfo is what CheckSQLiteCopy found in a copy.
type CopyInfo struct {
	Schema     int64 // the newest migration applied
	Entries    int64 // transparency log entries sequenced
	Integrated int64 // the size of its newest signed checkpoint (0: none)
}

// CheckSQLiteCopy opens a SQLite copy (Backup's) read-only, without
// touching it, and checks that SQLite finds it whole (integrity_check) and
// that it is a civstack database.
func CheckSQLiteCopy(ctx context.Context, path string) (CopyInfo, error) {
	var info CopyInfo
	if _, err := os.Stat(path); err != nil {
		return info, err
	}
	c, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return info, err
	}
	defer c.Close()
	rows, err := c.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return info, fmt.Errorf("%s is not a readable SQLite database: %s", path, rootCause(err))
	}
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return info, err
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return info, fmt.Errorf("%s: integrity check: %s", path, rootCause(err))
	}
	if len(problems) > 0 {
		return info, fmt.Errorf("%s is damaged: %s", path, strings.Join(strings.Fields(problems[0]), " "))
	}
	err = c.QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied),
		(SELECT value FROM tlog_counters WHERE name = 'next'),
		(SELECT COALESCE(MAX(size), 0) FROM tlog_checkpoints)`).Scan(&info.Schema, &info.Entries, &info.Integrated)
	if err != nil {
		return info, fmt.Errorf("%s is not a civstack database: %s", path, rootCause(err))
	}
	return info, nil
}

// CheckPgDump lists a custom-format dump (Backup's on PostgreSQL) with
// pg_restore --list, without restoring it, and returns how many tables'
// data it holds; a dump pg_restore cannot read, or one without civstack's
// log, is an error. pgRestore is the program; empty means "pg_restore" on
// PATH.
func CheckPgDump(ctx context.Context, path, pgRestore string) (int, error) {
	if pgRestore == "" {
		pgRestore = "pg_restore"
	}
	bin, err := exec.LookPath(pgRestore)
	if err != nil {
		return 0, fmt.Errorf("pg_restore not found (%s): install PostgreSQL's client programs to check the dump", pgRestore)
	}
	cmd := exec.CommandContext(ctx, bin, "--list", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("pg_restore --list %s: %s", path, lastLine(stderr.String(), err))
	}
	tables, log := 0, false
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		// "3456; 0 16390 TABLE DATA public tlog_entries postgres"
		f := strings.Fields(sc.Text())
		for i := 0; i+3 < len(f); i++ {
			if f[i] == "TABLE" && f[i+1] == "DATA" {
				tables++
				log = log || f[i+3] == "tlog_entries"
				break
			}
		}
	}
	if !log {
		return tables, fmt.Errorf("%s holds no transparency log: not a civstack database's dump", path)
	}
	return tables, nil
}
