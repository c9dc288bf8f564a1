package cli

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// TestBackupCommand: a backup of a demo node, on each engine, holds the
// database, the keys (still 0600) and the health files; SHA256SUMS checks;
// on SQLite the backup is a data directory another node opens, with the
// same log and people. Wrong calls fail in one line and leave nothing.
func TestBackupCommand(t *testing.T) {
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			opts, data, args := demoNode(t, eng)
			// The health files are made by serve; one stands for them here.
			os.MkdirAll(filepath.Join(data, "health"), 0o755)
			os.WriteFile(filepath.Join(data, "health", "rules.json"), []byte(`{"rules":[]}`), 0o644)

			out := filepath.Join(t.TempDir(), "backup")
			code, stdout, stderr := run(t, nil, append([]string{"backup", "--out", out}, args...)...)
			if code != 0 {
				t.Fatalf("backup: %d %q %q", code, stdout, stderr)
			}
			for _, want := range []string{"Copying the database", "schema version 30", "Copied keys/ (", "Copied health/ (1 files)", "files listed in SHA256SUMS", "civstack restore --from " + out} {
				if !strings.Contains(stdout, want) {
					t.Fatalf("backup's output lacks %q:\n%s", want, stdout)
				}
			}
			checkSums(t, out)
			var desc manifest
			if b, err := os.ReadFile(filepath.Join(out, manifestName)); err != nil || json.Unmarshal(b, &desc) != nil {
				t.Fatalf("the backup's description: %v", err)
			}
			if taken, err := time.Parse(time.RFC3339, desc.Taken); err != nil || time.Since(taken) > time.Minute ||
				desc.Civstack != Version || desc.Engine != eng.Name || desc.Schema != 30 || (opts.URL == "") != (desc.LogCheckpoint != nil) {
				t.Fatalf("the backup's description: %+v", desc)
			}
			keys, _ := os.ReadDir(filepath.Join(data, "keys"))
			for _, k := range keys {
				st, err := os.Stat(filepath.Join(out, "keys", k.Name()))
				if err != nil || st.Mode().Perm() != 0o600 {
					t.Fatalf("key %s in the backup: %v %v", k.Name(), st.Mode(), err)
				}
			}
			dbFile := store.SQLiteFile
			if opts.URL != "" {
				dbFile = store.PostgresDump
			}
			if st, err := os.Stat(filepath.Join(out, dbFile)); err != nil || st.Mode().Perm() != 0o600 || st.Size() == 0 {
				t.Fatalf("the database's copy: %v %v", st, err)
			}
			if opts.URL == "" {
				if !regexp.MustCompile(`Checking the copy…\n  whole .*, \d+ log entries`).MatchString(stdout) {
					t.Fatalf("no check of the copy:\n%s", stdout)
				}
				// The backup is a data directory: a node opens it and
				// finds what the original holds.
				count := func(dir string) (people, entries int) {
					ctx := context.Background()
					db, err := store.Open(ctx, store.Options{DataDir: dir})
					if err != nil {
						t.Fatal(err)
					}
					defer db.Close()
					if err := db.Reader().QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM people), (SELECT COUNT(*) FROM tlog_entries)").Scan(&people, &entries); err != nil {
						t.Fatal(err)
					}
					return
				}
				restored := t.TempDir()
				if _, err := copyTree(out, restored); err != nil {
					t.Fatal(err)
				}
				if code, keysOut, errOut := run(t, nil, "keys", "list", "--data", restored); code != 0 || strings.Count(keysOut, "\n") < 3 {
					t.Fatalf("keys list on the restored copy: %d %q %q", code, keysOut, errOut)
				}
				p1, e1 := count(data)
				p2, e2 := count(restored)
				if p1 == 0 || p1 != p2 || e1 != e2 {
					t.Fatalf("original %d people, %d entries; restored %d, %d", p1, e1, p2, e2)
				}
			} else {
				if !regexp.MustCompile(`Checking the dump…\n  pg_restore reads it: \d+ tables' data`).MatchString(stdout) {
					t.Fatalf("no check of the dump:\n%s", stdout)
				}
				// Without pg_dump: one line, and the directory given (empty)
				// stays empty.
				empty := t.TempDir()
				code, _, stderr := run(t, nil, append([]string{"backup", "--out", empty, "--pg-dump", "/nonexistent/pg_dump"}, args...)...)
				oneLine(t, "no pg_dump", code, 1, stderr, "pg_dump not found")
				if left, _ := os.ReadDir(empty); len(left) != 0 {
					t.Fatalf("a failed backup left %v", left)
				}
			}

			code, _, stderr = run(t, nil, append([]string{"backup", "--out", out}, args...)...)
			oneLine(t, "a backup into a full directory", code, 2, stderr, "is not empty")
		})
	}

	code, _, stderr := run(t, nil, "backup", "--data", t.TempDir())
	oneLine(t, "no --out", code, 2, stderr, "give --out DIR")
	out := filepath.Join(t.TempDir(), "b")
	code, _, stderr = run(t, nil, "backup", "--data", t.TempDir(), "--out", out)
	oneLine(t, "no database", code, 1, stderr, "no civstack database in")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a failed backup left its directory: %v", err)
	}
}

// logEntries counts the entries of the log of the node in opts and data.
func logEntries(t *testing.T, opts store.Options, data string) (n int64) {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{URL: opts.URL, DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Reader().QueryRow("SELECT COUNT(*) FROM tlog_entries").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// appendLog adds n receipts to that node's log and returns its size.
func appendLog(t *testing.T, opts store.Options, data string, n int) (size int64) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{URL: opts.URL, DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Tx(ctx, func(tx *store.Tx) error {
		entries := make([][]byte, n)
		for i := range entries {
			b, err := (&tlog.Entry{Kind: tlog.KindReceipt, Time: time.Now()}).Marshal()
			if err != nil {
				return err
			}
			entries[i] = b
		}
		first, err := tlog.Sequence(ctx, tx, time.Now(), entries...)
		size = first + int64(n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return size
}

// demoNode seeds the demo into a new database of eng and a data directory,
// and returns the flags that name them.
func demoNode(t *testing.T, eng storetest.Engine) (store.Options, string, []string) {
	t.Helper()
	opts := eng.Open(t)
	data := t.TempDir()
	args := []string{"--data", data}
	if opts.URL != "" {
		args = append(args, "--db", opts.URL)
	}
	if code, out, errOut := run(t, nil, append([]string{"demo"}, args...)...); code != 0 {
		t.Fatalf("demo: %d %s %s", code, out, errOut)
	}
	return opts, data, args
}

// checkSums checks dir/SHA256SUMS as sha256sum -c would, and that it lists
// every file.
func checkSums(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum {
			t.Fatalf("%s: SHA256SUMS says %s", name, sum)
		}
		listed[name] = true
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if err == nil && !d.IsDir() && rel != "SHA256SUMS" && !listed[filepath.ToSlash(rel)] {
			t.Errorf("%s is not in SHA256SUMS", rel)
		}
		return nil
	})
}

// TestRestoreRewindsLog: a node keeps the newest checkpoint it signed in
// its data directory. Restoring an older backup of its database makes
// serve refuse, in one line naming both sizes, until an operator starts it
// with --accept-log-rewind; a later start serves as usual.
func TestRestoreRewindsLog(t *testing.T) {
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) { restoreRewindsLog(t, eng) })
	}
}

func restoreRewindsLog(t *testing.T, eng storetest.Engine) {
	ctx := context.Background()
	opts := eng.Open(t)
	data := filepath.Join(t.TempDir(), "civstack-data")
	node := []string{"--data", data}
	if opts.URL != "" {
		node = append(node, "--db", opts.URL)
	}
	with := func(args ...string) []string { return append(slices.Clone(node), args...) }
	mark := filepath.Join(data, logMarkFile)
	markSize := func() int64 {
		c, ok, err := tlog.ReadMark(mark)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return -1
		}
		return c.Size
	}
	waitMark := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for markSize() < want {
			if time.Now().After(deadline) {
				t.Fatalf("the mark stayed at %d, want %d", markSize(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	s := startServe(t, nil, with()...)
	waitMark(1)
	backupDir := filepath.Join(t.TempDir(), "backup")
	if code, out, errOut := run(t, nil, append([]string{"backup", "--out", backupDir}, node...)...); code != 0 {
		t.Fatalf("backup: %d %s %s", code, out, errOut)
	}
	// The log grows after the backup: 5 more entries, signed, which an
	// auditor checks and keeps.
	size := appendLog(t, opts, data, 5)
	waitMark(size)
	auditorState := filepath.Join(t.TempDir(), "auditor.state")
	verify := func(s *serveProc) (int, string) {
		t.Helper()
		code, _, stderr := run(t, nil, "log", "verify", "--url", s.url+"/log", "--key", logKey(t, s), "--state", auditorState, "--quiet")
		return code, stderr
	}
	if code, stderr := verify(s); code != 0 {
		t.Fatalf("the auditor's check before the restore: %d %s", code, stderr)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}

	// Restore the backup: the command warns of what serve will say.
	code, out, errOut := run(t, nil, append([]string{"restore", "--from", backupDir}, node...)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("This node signed the log up to size %d; the restored log is shorter", size)) || !strings.Contains(out, "--accept-log-rewind") {
		t.Fatalf("restore: %d %q %q", code, out, errOut)
	}
	// Were it not refused, serve would run until the deadline and exit 0.
	refusedCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	var serveOut, serveErr syncBuf
	code = (&env{stdout: &serveOut, stderr: &serveErr, getenv: func(string) string { return "" }, now: time.Now}).main(refusedCtx, append([]string{"serve", "--addr", "127.0.0.1:0"}, node...))
	cancel()
	stderr := serveErr.String()
	// (An info line may come first: the port, and so --url, changed.)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	m := regexp.MustCompile(`^civstack serve: the transparency log was rewound: the database's log ends at size (\d+), and this node signed a checkpoint of size (\d+) .*--accept-log-rewind`).FindStringSubmatch(last)
	if code != 1 || m == nil || m[2] != strconv.FormatInt(size, 10) {
		t.Fatalf("serve a rewound log: exit %d, stderr %q", code, stderr)
	}
	restored, _ := strconv.ParseInt(m[1], 10, 64)
	if restored < 1 || restored > size-5 {
		t.Fatalf("the restored log's size %d: want the backup's, at most %d", restored, size-5)
	}
	s = startServe(t, nil, with("--accept-log-rewind")...)
	if !strings.Contains(s.errOut.String(), "serving a rewound transparency log") {
		t.Fatalf("no warning when a rewound log is served: %s", s.errOut.String())
	}
	// The node declares the rewind in the log (entry number restored), and
	// the auditor who kept the history before is told, by the log itself.
	waitMark(restored + 1)
	code, stderr = verify(s)
	oneLine(t, "the auditor after the restore", code, 1, stderr, fmt.Sprintf("entries now, %d when last checked", size))
	declaredRE := regexp.MustCompile(`^civstack log: THE LOG SHRANK: .*\. The log itself declares it: entry (\d+) \(`)
	d := declaredRE.FindStringSubmatch(stderr)
	if d == nil {
		t.Fatalf("the auditor is not told of the declaration: %s", stderr)
	}
	// (The copy may hold entries sequenced after its last checkpoint.)
	if at, _ := strconv.ParseInt(d[1], 10, 64); at < restored || at >= size {
		t.Fatalf("the declaration is entry %d: want one after the restored %d, before the %d replaced", at, restored, size)
	}
	// Grown past the history the auditor kept: rewritten, and declared.
	grown := appendLog(t, opts, data, int(size-restored)+3)
	waitMark(grown)
	code, stderr = verify(s)
	oneLine(t, "the auditor once the log grew past", code, 1, stderr, fmt.Sprintf("THE LOG WAS REWRITTEN: the checkpoint of %d entries is not consistent with the one of %d entries", grown, size))
	if !strings.Contains(stderr, "The log itself declares it: entry "+d[1]+" (") {
		t.Fatalf("the auditor is not told of the declaration: %s", stderr)
	}
	s.stop(t)
	s = startServe(t, nil, with()...)
	s.stop(t)
	s = startServe(t, nil, with("--accept-log-rewind")...)
	s.stop(t)
	if !strings.Contains(s.errOut.String(), "--accept-log-rewind is set, and the log was not rewound") {
		t.Fatalf("no word that the flag is no longer needed: %s", s.errOut.String())
	}
}

// TestDemoStartsAfresh: a demo whose database was deleted (to start the
// demo afresh) serves its new log, with a warning, where a real node
// would refuse.
func TestDemoStartsAfresh(t *testing.T) {
	data := filepath.Join(t.TempDir(), "civstack-data")
	s := startServe(t, nil, "--data", data, "--demo")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok, _ := tlog.ReadMark(filepath.Join(data, logMarkFile)); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no mark written")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop(t)
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(data, store.SQLiteFile+suffix))
	}
	s = startServe(t, nil, "--data", data, "--demo")
	s.stop(t)
	if !strings.Contains(s.errOut.String(), "serving a rewound transparency log") {
		t.Fatalf("no warning: %s", s.errOut.String())
	}
}

// TestRestoreCommand: on each engine, a backup restored with civstack
// restore brings back the database as it was (entries written after the
// backup are gone) and copies a key the node lost; it refuses while a node
// runs, a damaged backup, another node's keys and a backup of the other
// engine, each in one line, before changing anything.
func TestRestoreCommand(t *testing.T) {
	ctx := context.Background()
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			opts, data, args := demoNode(t, eng)
			entries := func() int64 { return logEntries(t, opts, data) }
			grow := func() { appendLog(t, opts, data, 3) }
			backupDir := filepath.Join(t.TempDir(), "backup")
			if code, out, errOut := run(t, nil, append([]string{"backup", "--out", backupDir}, args...)...); code != 0 {
				t.Fatalf("backup: %d %s %s", code, out, errOut)
			}
			before := entries()
			grow()
			if entries() != before+3 {
				t.Fatal("the log did not grow")
			}
			restore := append([]string{"restore", "--from", backupDir}, args...)

			// Refusals, each before anything changes.
			other := ""
			if opts.URL == "" {
				other = "--db=" + "postgres://nobody@127.0.0.1:1/none"
			}
			if other != "" {
				code, _, stderr := run(t, nil, append(restore, other)...)
				oneLine(t, "a SQLite backup on PostgreSQL", code, 2, stderr, "is a SQLite backup (civstack.db): restore it without --db")
			} else {
				code, _, stderr := run(t, nil, "restore", "--from", backupDir, "--data", data)
				oneLine(t, "a PostgreSQL backup on SQLite", code, 2, stderr, "is a PostgreSQL backup (civstack.pgdump): restore it with --db")
			}
			db, err := store.Open(ctx, store.Options{URL: opts.URL, DataDir: data})
			if err != nil {
				t.Fatal(err)
			}
			present, err := db.TryLeaseShared(ctx, nodesLease)
			if err != nil || present == nil {
				t.Fatalf("nodes lease: %v %v", present, err)
			}
			code, _, stderr := run(t, nil, restore...)
			oneLine(t, "restore while a node runs", code, 1, stderr, "a civstack node is running")
			if code, out, errOut := run(t, nil, append(restore, "--dry-run")...); code != 0 || !strings.Contains(out, "nothing was changed") {
				t.Fatalf("a dry run while a node runs (a test of the backup): %d %q %q", code, out, errOut)
			}
			present.Release()
			db.Close()
			// The demo command makes the log and document keys (serve makes
			// the secrets): the log key stands for any.
			logKeys, _ := filepath.Glob(filepath.Join(backupDir, "keys", "log-*.pem"))
			if len(logKeys) != 1 {
				t.Fatalf("the backup's log keys: %v", logKeys)
			}
			keyName := filepath.Base(logKeys[0])
			secret := filepath.Join(data, "keys", keyName)
			mine, _ := os.ReadFile(secret)
			os.WriteFile(secret, []byte("another key"), 0o600)
			code, _, stderr = run(t, nil, restore...)
			oneLine(t, "another node's key", code, 1, stderr, keyName+" differs from the backup's")
			os.WriteFile(secret, mine, 0o600)
			damaged := filepath.Join(t.TempDir(), "damaged")
			if _, err := copyTree(backupDir, damaged); err != nil {
				t.Fatal(err)
			}
			dbCopy := filepath.Join(damaged, store.SQLiteFile)
			if opts.URL != "" {
				dbCopy = filepath.Join(damaged, store.PostgresDump)
			}
			b, _ := os.ReadFile(dbCopy)
			b[len(b)/2] ^= 1
			os.WriteFile(dbCopy, b, 0o600)
			code, _, stderr = run(t, nil, append([]string{"restore", "--from", damaged}, args...)...)
			oneLine(t, "a damaged backup", code, 1, stderr, "does not match SHA256SUMS")
			if entries() != before+3 {
				t.Fatal("a refused restore changed the database")
			}

			// The restore, with a key the node lost: first a dry run.
			os.Remove(secret)
			code, stdout, stderr := run(t, nil, append(restore, "--dry-run")...)
			if code != 0 || !strings.Contains(stdout, "Dry run: the backup checks. A restore would replace the database") ||
				!strings.Contains(stdout, "and copy 1 file the node lacks (keys/"+keyName+"); nothing was changed.") {
				t.Fatalf("dry run: %d %q %q", code, stdout, stderr)
			}
			if _, err := os.Stat(secret); !errors.Is(err, os.ErrNotExist) || entries() != before+3 {
				t.Fatal("a dry run changed something")
			}
			code, stdout, stderr = run(t, nil, restore...)
			if code != 0 || !strings.Contains(stdout, "files match SHA256SUMS\n  taken ") || !strings.Contains(stdout, "Copied keys/"+keyName+" from the backup") || !strings.HasSuffix(stdout, "Restored.\n") {
				t.Fatalf("restore: %d %q %q", code, stdout, stderr)
			}
			if got, _ := os.ReadFile(secret); !bytes.Equal(got, mine) {
				t.Fatal("the lost key was not brought back")
			}
			if n := entries(); n != before {
				t.Fatalf("restored %d entries, the backup holds %d", n, before)
			}
			if opts.URL == "" {
				if !regexp.MustCompile(`the database it replaced is kept as \S+civstack\.db\.replaced-\d{8}T\d{6}Z\n`).MatchString(stdout) {
					t.Fatalf("no word of the replaced database:\n%s", stdout)
				}
			}
			// The restored node opens and works.
			if code, out, errOut := run(t, nil, append([]string{"migrate", "status"}, args...)...); code != 0 || !strings.Contains(out, "Up to date.") {
				t.Fatalf("migrate status after the restore: %d %q %q", code, out, errOut)
			}
			grow()

			// A backup a newer civstack made is refused, and nothing changes.
			db, err = store.Open(ctx, store.Options{URL: opts.URL, DataDir: data})
			if err != nil {
				t.Fatal(err)
			}
			setVersion := func(q string) {
				t.Helper()
				if err := db.Tx(ctx, func(tx *store.Tx) error { _, err := tx.ExecContext(ctx, q); return err }); err != nil {
					t.Fatal(err)
				}
			}
			setVersion("INSERT INTO goose_db_version (version_id, is_applied) VALUES (999, true)")
			newer := filepath.Join(t.TempDir(), "newer")
			if code, out, errOut := run(t, nil, append([]string{"backup", "--out", newer}, args...)...); code != 0 {
				t.Fatalf("backup: %d %s %s", code, out, errOut)
			}
			setVersion("DELETE FROM goose_db_version WHERE version_id = 999")
			db.Close()
			grown := entries()
			code, _, stderr = run(t, nil, append([]string{"restore", "--from", newer}, args...)...)
			oneLine(t, "a newer backup", code, 1, stderr, "newer than this civstack knows")
			if entries() != grown {
				t.Fatal("a refused restore changed the database")
			}
		})
	}
	code, _, stderr := run(t, nil, "restore", "--data", t.TempDir())
	oneLine(t, "no --from", code, 2, stderr, "give --from DIR")
	code, _, stderr = run(t, nil, "restore", "--data", t.TempDir(), "--from", t.TempDir())
	oneLine(t, "not a backup", code, 1, stderr, "holds no civstack.db")
}

// TestEncryptedBackup: with --recipient the backup is one age-encrypted tar
// (no key or database in clear left in the directory) that age's own
// library opens, and restore opens it with --identity; without it, or with
// another key, restore refuses in one line.
func TestEncryptedBackup(t *testing.T) {
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			opts, data, args := demoNode(t, eng)
			id, err := age.GenerateX25519Identity()
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "backup")
			code, _, stderr := run(t, nil, append([]string{"backup", "--out", out, "--recipient", "age1nope"}, args...)...)
			oneLine(t, "a recipient that is no key", code, 2, stderr, "the backup's recipients")
			code, stdout, stderr := run(t, nil, append([]string{"backup", "--out", out, "--recipient", id.Recipient().String()}, args...)...)
			if code != 0 || !strings.Contains(stdout, "Encrypting it to 1 recipient…") || !strings.Contains(stdout, "age -d -i KEYFILE civstack-backup.tar.age | tar -x") {
				t.Fatalf("backup: %d %q %q", code, stdout, stderr)
			}
			entries, _ := os.ReadDir(out)
			if len(entries) != 3 || entries[0].Name() != "SHA256SUMS" || entries[1].Name() != manifestName || entries[2].Name() != encryptedName {
				t.Fatalf("the backup directory holds %v, want SHA256SUMS, %s and %s alone", entries, manifestName, encryptedName)
			}
			checkSums(t, out)
			sealed, _ := os.ReadFile(filepath.Join(out, encryptedName))
			logKeys, _ := filepath.Glob(filepath.Join(data, "keys", "log-*.pem"))
			key, _ := os.ReadFile(logKeys[0])
			if len(key) == 0 || bytes.Contains(sealed, key) || bytes.Contains(sealed, []byte("PRIVATE KEY")) {
				t.Fatal("the log's key is in clear in the encrypted backup")
			}
			// age's library opens it: a tar of a plain backup.
			r, err := age.Decrypt(bytes.NewReader(sealed), id)
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{}
			tr := tar.NewReader(r)
			for h, err := tr.Next(); err == nil; h, err = tr.Next() {
				names[h.Name] = true
			}
			dbName := store.SQLiteFile
			if opts.URL != "" {
				dbName = store.PostgresDump
			}
			if !names[dbName] || !names["SHA256SUMS"] || !names["keys/"+filepath.Base(logKeys[0])] {
				t.Fatalf("the archive holds %v", names)
			}

			before := logEntries(t, opts, data)
			appendLog(t, opts, data, 1)

			restore := append([]string{"restore", "--from", out}, args...)
			code, _, stderr = run(t, nil, restore...)
			oneLine(t, "no --identity", code, 2, stderr, "is encrypted: give --identity FILE")
			other, _ := age.GenerateX25519Identity()
			otherFile := filepath.Join(t.TempDir(), "other.key")
			os.WriteFile(otherFile, []byte(other.String()+"\n"), 0o600)
			code, _, stderr = run(t, nil, append(restore, "--identity", otherFile)...)
			oneLine(t, "another key", code, 1, stderr, "was not encrypted to any key of --identity")
			idFile := filepath.Join(t.TempDir(), "backup.key")
			os.WriteFile(idFile, []byte("# the backups' key\n"+id.String()+"\n"), 0o600)
			code, stdout, stderr = run(t, nil, append(restore, "--identity", idFile)...)
			if code != 0 || !strings.Contains(stdout, "  decrypted\n") || !strings.HasSuffix(stdout, "Restored.\n") {
				t.Fatalf("restore: %d %q %q", code, stdout, stderr)
			}
			if n := logEntries(t, opts, data); n != before {
				t.Fatalf("restored %d entries, the backup holds %d", n, before)
			}
			if left, _ := filepath.Glob(filepath.Join(data, ".restore-*")); len(left) != 0 {
				t.Fatalf("the decrypted copy was left in the data directory: %v", left)
			}
		})
	}
}
