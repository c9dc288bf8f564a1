package store

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
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
		err = syncPath(tmp)
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

// pgDump runs pg_dump into path.
func (db *DB) pgDump(ctx context.Context, path, prog string) error {
	bin, err := exec.LookPath(cmp.Or(prog, "pg_dump"))
	if err != nil {
		return ErrNoPgDump
	}
	dbURL, env, err := db.pgClient()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "--format=custom", "--file="+path, "--dbname="+dbURL)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return errors.New(said(filepath.Base(bin), stderr.String(), err))
	}
	return nil
}

// said is what a program said went wrong: its last line on stderr, or
// err, named by the program unless the line names it already.
func said(prog, stderr string, err error) string {
	// PostgreSQL's programs follow an ERROR line with CONTEXT and the like.
	if i := strings.LastIndex(stderr, "ERROR:"); i >= 0 {
		line, _, _ := strings.Cut(stderr[i+len("ERROR:"):], "\n")
		return prog + ": " + strings.TrimSpace(line)
	}
	line := lastLine(stderr, err)
	if strings.HasPrefix(line, prog+":") {
		return line
	}
	return prog + ": " + line
}

// pgClient is how PostgreSQL's client programs reach the database: the
// URL without its password, and the environment with it in PGPASSWORD
// (not on a command line, where other users of the machine could read it).
func (db *DB) pgClient() (string, []string, error) {
	u, err := url.Parse(db.url)
	if err != nil {
		return "", nil, fmt.Errorf("%w: --db must be a postgres:// URL", ErrUnavailable)
	}
	env := os.Environ()
	if u.User != nil {
		if pass, ok := u.User.Password(); ok {
			env = append(env, "PGPASSWORD="+pass)
			u.User = url.User(u.User.Username())
		}
	}
	return u.String(), env, nil
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

// syncPath flushes a file, or a directory's entries, to disk.
func syncPath(path string) error {
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
	bin, err := exec.LookPath(cmp.Or(pgRestore, "pg_restore"))
	if err != nil {
		return 0, fmt.Errorf("pg_restore not found (%s): install PostgreSQL's client programs to check the dump", pgRestore)
	}
	cmd := exec.CommandContext(ctx, bin, "--list", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s (pg_restore --list %s)", said("pg_restore", stderr.String(), err), path)
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

// ReplaceSQLite puts the SQLite copy at from (Backup's, checked) in place of
// the database in dir, which no process may have open (hold the nodes'
// lease exclusively, with the database closed). The database it replaces,
// if any, is kept beside it as civstack.db.replaced-STAMP (its write-ahead
// log, if one is left, as that name with -wal), whose path it returns. The
// copy is written under a temporary name first, so a failure before the
// last rename leaves the old database in place.
func ReplaceSQLite(dir, from, stamp string) (replaced string, err error) {
	live := filepath.Join(dir, SQLiteFile)
	tmp := live + ".restoring"
	os.Remove(tmp)
	in, err := os.Open(from)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("copy %s: %w", from, err)
	}
	if _, err := os.Stat(live); err == nil {
		replaced = live + ".replaced-" + stamp
		if err := os.Rename(live, replaced); err != nil {
			os.Remove(tmp)
			return "", err
		}
		if _, err := os.Stat(live + "-wal"); err == nil {
			if err := os.Rename(live+"-wal", replaced+"-wal"); err != nil {
				return replaced, err
			}
		}
	}
	os.Remove(live + "-shm")
	if err := os.Rename(tmp, live); err != nil {
		return replaced, err
	}
	return replaced, syncPath(dir)
}

// RestoreOptions name PostgreSQL's client programs for RestorePostgres;
// empty means the program's name on PATH.
type RestoreOptions struct {
	PgRestore, Psql string
}

// RestorePostgres replaces everything in the database's public schema with
// the dump at path (Backup's), in one transaction: pg_restore turns the
// dump into SQL, and psql runs it between BEGIN (then dropping and
// recreating the schema) and a COMMIT sent only once pg_restore has read
// the whole dump; psql stops at the first error. A failure anywhere leaves
// the database as it was. No node may be running (hold the nodes' lease
// exclusively). The database must be civstack's alone: whatever else the
// public schema holds is dropped too.
func (db *DB) RestorePostgres(ctx context.Context, path string, o RestoreOptions) error {
	if db.dialect != Postgres {
		return errors.New("RestorePostgres: not a PostgreSQL database")
	}
	restoreBin, err := exec.LookPath(cmp.Or(o.PgRestore, "pg_restore"))
	if err != nil {
		return errors.New("pg_restore not found: install PostgreSQL's client programs (Debian: apt install postgresql-client) or give its path")
	}
	psqlBin, err := exec.LookPath(cmp.Or(o.Psql, "psql"))
	if err != nil {
		return errors.New("psql not found: install PostgreSQL's client programs (Debian: apt install postgresql-client) or give its path")
	}
	dbURL, env, err := db.pgClient()
	if err != nil {
		return err
	}
	var dumpErr, psqlErr bytes.Buffer
	pr, pw := io.Pipe()
	psql := exec.CommandContext(ctx, psqlBin, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--dbname="+dbURL)
	psql.Env, psql.Stdin, psql.Stdout, psql.Stderr = env, pr, io.Discard, &psqlErr
	if err := psql.Start(); err != nil {
		return fmt.Errorf("psql: %w", err)
	}
	psqlDone := make(chan error, 1)
	go func() {
		err := psql.Wait()
		pr.CloseWithError(errors.New("psql stopped")) // writes below fail instead of blocking
		psqlDone <- err
	}()
	dumpRunErr := func() error {
		if _, err := io.WriteString(pw, "BEGIN;\nDROP SCHEMA public CASCADE;\nCREATE SCHEMA public;\n"); err != nil {
			return err
		}
		dump := exec.CommandContext(ctx, restoreBin, "--no-owner", "--no-privileges", "--file=-", path)
		dump.Stdout, dump.Stderr = pw, &dumpErr
		if err := dump.Run(); err != nil {
			return errors.New(said("pg_restore", dumpErr.String(), err))
		}
		// A backup a newer civstack made: refused, so nothing changes.
		_, err := fmt.Fprintf(pw, `DO $$ BEGIN IF (SELECT COALESCE(MAX(version_id), 0) FROM public.goose_db_version WHERE is_applied) > %d THEN
RAISE EXCEPTION 'the backup''s schema is newer than this civstack knows (version %d): restore it with the civstack that made it';
END IF; END $$;
COMMIT;
`, KnownVersion(Postgres), KnownVersion(Postgres))
		return err
	}()
	if dumpRunErr != nil {
		pw.CloseWithError(dumpRunErr) // psql reads no COMMIT: the transaction rolls back
	} else {
		pw.Close()
	}
	psqlRunErr := <-psqlDone
	var exit *exec.ExitError
	switch {
	case errors.As(psqlRunErr, &exit): // psql failed on its own (a statement, the connection)
		return fmt.Errorf("nothing was changed: %s", said("psql", psqlErr.String(), psqlRunErr))
	case dumpRunErr != nil:
		return fmt.Errorf("nothing was changed: %w", dumpRunErr)
	case psqlRunErr != nil:
		return fmt.Errorf("nothing was changed: %s", said("psql", psqlErr.String(), psqlRunErr))
	}
	return nil
}
