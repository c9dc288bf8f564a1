package cli

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

// node is what every command that touches a civstack deployment opens.
type node struct {
	db       *store.DB
	keys     *keyring.Ring
	reg      *registry.Registry
	release  func()    // the node's presence (openNode) or its being alone (openNodeAlone)
	presence *presence // openNode's
}

// close lets the node's lease go and closes its database.
func (n *node) close() {
	n.release()
	n.db.Close()
}

// nodesLease is the lease every node holds shared for as long as it runs
// (openNode), so that a command that needs every node stopped (migrate
// down, log reindex) can take it exclusively only when none runs, and no
// node starts while such a command runs.
const nodesLease = "nodes"

// storageFlags are shared by every command that opens a node.
type storageFlags struct {
	data, db *string
}

func addStorageFlags(f *flags) storageFlags {
	return storageFlags{
		data: f.String("data", "./civstack-data", "data directory: keys, and the SQLite database unless --db is given"),
		db:   f.DB("PostgreSQL URL (postgres://user:pass@host:5432/db); empty means SQLite in --data"),
	}
}

// existing refuses a SQLite data directory without a database, for a
// command that reads or changes one and should not make an empty one
// where --data has a typo (serve, demo and migrate up make it).
func (s storageFlags) existing() error {
	if *s.db != "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(*s.data, store.SQLiteFile)); err != nil {
		return fmt.Errorf("no civstack database in %s (give the node's --data, or --db for PostgreSQL)", *s.data)
	}
	return nil
}

func (s storageFlags) describe() string {
	if *s.db != "" {
		return "PostgreSQL"
	}
	return "SQLite at " + filepath.Join(*s.data, "civstack.db")
}

// openNode opens the keys and the database and migrates it, as one of
// the deployment's nodes: it refuses while a command that needs every node
// stopped runs (nodesStopped). Call close when done; a long-running node
// also runs presence.hold.
func openNode(ctx context.Context, e *env, s storageFlags, logger *slog.Logger) (*node, error) {
	p := &presence{}
	n, err := openNodeAs(ctx, e, s, logger, func(db *store.DB) (func(), error) {
		l, err := db.TryLeaseShared(ctx, nodesLease)
		if err != nil {
			return nil, err
		}
		if l == nil {
			return nil, fmt.Errorf("a command that needs every node stopped (civstack migrate down or log reindex) is running on %s: start again when it has finished", s.describe())
		}
		p.lease = l
		return p.release, nil
	})
	if n != nil {
		n.presence = p
	}
	return n, err
}

// presenceEvery is how often a serving node checks its share of the nodes'
// lease.
const presenceEvery = 10 * time.Second

// presence is a node's share of the nodes' lease.
type presence struct {
	mu    sync.Mutex
	lease store.Lease // nil once released
}

func (p *presence) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lease != nil {
		p.lease.Release()
		p.lease = nil
	}
}

// hold checks the node's share every interval until ctx ends and takes it
// again if it was lost (on PostgreSQL its connection died, say in a server
// restart), so that nodesStopped keeps seeing the node. If a command that
// needs every node stopped has taken the lease meanwhile, it says so.
func (p *presence) hold(ctx context.Context, db *store.DB, every time.Duration, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		if p.lease != nil && p.lease.Check(ctx) != nil {
			switch l, err := db.TryLeaseShared(ctx, nodesLease); {
			case err != nil:
				logger.Warn("nodes lease lost; taking it again failed", "err", err)
			case l == nil:
				logger.Error("nodes lease lost, and a command that needs every node stopped (migrate down or log reindex) has it: stop this node")
			default:
				p.lease.Release()
				p.lease = l
				logger.Info("nodes lease taken again")
			}
		}
		p.mu.Unlock()
	}
}

// openNodeAlone is openNode for a command that must run with every node
// stopped (see nodesStopped); it refuses while one runs.
func openNodeAlone(ctx context.Context, e *env, s storageFlags, logger *slog.Logger) (*node, error) {
	return openNodeAs(ctx, e, s, logger, func(db *store.DB) (func(), error) { return nodesStopped(ctx, db, s) })
}

// openNodeAs is openNode with lease, which takes the node's lease on the
// opened database before anything is migrated or written.
func openNodeAs(ctx context.Context, e *env, s storageFlags, logger *slog.Logger, lease func(*store.DB) (func(), error)) (*node, error) {
	db, err := store.Open(ctx, store.Options{URL: *s.db, DataDir: *s.data, Logger: logger})
	if err != nil {
		return nil, err
	}
	release, err := lease(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	n := &node{db: db, release: release}
	fail := func(err error) (*node, error) {
		n.close()
		return nil, err
	}
	if n.keys, err = keyring.Open(filepath.Join(*s.data, "keys"), e.now, rand.Reader); err != nil {
		return fail(fmt.Errorf("keys in %s: %w", *s.data, err))
	}
	if err := db.Migrate(ctx); err != nil {
		return fail(err)
	}
	if err := n.checkKeys(ctx, *s.data); err != nil { // before logKeys records this node's keys
		return fail(err)
	}
	n.reg = registry.New(db, e.now, rand.Reader)
	if err := n.logKeys(ctx, e.now()); err != nil {
		if m := (*missingKeysError)(nil); errors.As(err, &m) {
			keysDir := filepath.Join(*s.data, "keys")
			err = fmt.Errorf("%s lacks %s that this database's transparency log records (another node made %s, or rotated %s since this one's keys were copied): %s",
				keysDir, m.keys(), them(len(m.ids)), them(len(m.ids)),
				n.copyFrom(ctx, "every node needs every key the log records: stop this one and copy the keys directory of the node that made "+them(len(m.ids))+" to "+keysDir))
		}
		return fail(err)
	}
	return n, nil
}

// nodeSecrets are the secrets in DATA/keys that seal or key data in the
// database (payment and identity seal keys and device secrets; exchange
// keys the citizens' pseudonyms in the log): a node with other ones could
// not read what another sealed, and would tag accesses that the citizen's
// page and the audit do not find.
var nodeSecrets = []string{"payment", "identity", "exchange"}

// checkKeys refuses a database that another node's keys made: a log whose
// newest checkpoint none of DATA/keys' log keys signed, or a secret other
// than the one the database was first served with (its fingerprint is
// kept in meta; the first node to open the database records it).
func (n *node) checkKeys(ctx context.Context, data string) error {
	keysDir := filepath.Join(data, "keys")
	var logKeys []crypto.Signer
	for _, k := range n.keys.All() {
		if k.Purpose == keyring.Log {
			logKeys = append(logKeys, k.Signer)
		}
	}
	size, err := tlog.CheckSigners(ctx, n.db, logKeys)
	if errors.Is(err, tlog.ErrOtherKey) {
		return fmt.Errorf("%s holds none of the log keys that signed this database's transparency log (its checkpoint of size %d): %s",
			keysDir, size, n.copyFromFirst(ctx, "keys directory", keysDir))
	}
	if err != nil {
		return err
	}
	prints := map[string]string{}
	for _, name := range nodeSecrets {
		b, err := n.keys.Secret(name)
		if err != nil {
			return fmt.Errorf("keys in %s: %w", data, err)
		}
		prints[name] = keyring.Fingerprint(name, b)
	}
	other, err := n.sameAsFirst(ctx, "secret_fingerprint_", prints)
	if err != nil {
		return fmt.Errorf("the secrets' fingerprints: %w", err)
	}
	if len(other) > 0 {
		var files []string
		for _, name := range other {
			files = append(files, name+".secret")
		}
		return fmt.Errorf("%s/%s %s this database was first served with (what it sealed or keyed could not be read or found): %s",
			keysDir, strings.Join(files, ", "), notTheOnes(len(files)), n.copyFromFirst(ctx, "keys directory", keysDir))
	}
	return nil
}

// checkHealth refuses a node whose document signing certificates are not
// the first node's: the certificate's hash is the key id (kid) a health
// pass names, so passes one node signed would not verify under the trust
// list another publishes. The first node to serve the database with a
// document key records its certificate's hash in meta.
func (n *node) checkHealth(ctx context.Context, h *healthpass.Node) error {
	hashes := map[string]string{}
	for id, c := range h.DSCs {
		sum := sha256.Sum256(c.Raw)
		hashes[id] = hex.EncodeToString(sum[:])
	}
	other, err := n.sameAsFirst(ctx, "dsc_", hashes)
	if err != nil {
		return fmt.Errorf("the health certificates' hashes: %w", err)
	}
	if len(other) > 0 {
		var files []string
		for _, id := range other {
			files = append(files, "dsc-"+id+".pem")
		}
		return fmt.Errorf("%s/%s %s this database's health passes were first signed under (a pass names its certificate): %s",
			h.Dir, strings.Join(files, ", "), notTheOnes(len(files)), n.copyFromFirst(ctx, "health directory", h.Dir))
	}
	return nil
}

// noteRules records the health rules the node serves (version and
// digest) and warns when the database was last served with others: every
// node must decide health codes by the same rules, and after an edit of
// DATA/health/rules.json every node needs a restart. A warning, not a
// refusal: nodes restarted one after another serve both for a while.
func (n *node) noteRules(ctx context.Context, r *healthpass.Rules, logger *slog.Logger) error {
	this := r.Version + " " + r.Digest
	var before string
	err := n.db.Tx(ctx, func(tx *store.Tx) error {
		before = ""
		if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'health_rules'").Scan(&before); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('health_rules', $1) ON CONFLICT (name) DO UPDATE SET value = excluded.value", this)
		return err
	})
	if err != nil {
		return fmt.Errorf("record the health rules: %w", err)
	}
	if before != "" && before != this {
		version, digest, _ := strings.Cut(before, " ")
		logger.Warn("the health rules differ from those this database was last served with: every node must serve the same DATA/health/rules.json, so restart each after a change",
			"rules", r.Version, "digest", r.Digest, "before", version, "digest_before", digest)
	}
	return nil
}

func notTheOnes(n int) string {
	if n > 1 {
		return "are not the ones"
	}
	return "is not the one"
}

// sameAsFirst records in meta, under prefix and each of want's keys, its
// value where the database has none yet (the first node to open it
// does), in one transaction, and returns, sorted, the keys whose
// recorded value is another.
func (n *node) sameAsFirst(ctx context.Context, prefix string, want map[string]string) ([]string, error) {
	var other []string
	err := n.db.Tx(ctx, func(tx *store.Tx) error {
		other = nil
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if _, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", prefix+k, want[k]); err != nil {
				return err
			}
			var have string
			if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = $1", prefix+k).Scan(&have); err != nil {
				return err
			}
			if have != want[k] {
				other = append(other, k)
			}
		}
		return nil
	})
	return other, err
}

// copyFromFirst is what a node whose what (keys, health directory) at dir
// is not the first node's should do.
func (n *node) copyFromFirst(ctx context.Context, what, dir string) string {
	return n.copyFrom(ctx, "a node needs the "+what+" of the node that first served this database: stop this one and copy that node's "+what+" to "+dir)
}

// copyFrom is the remedy do, with where to read about it, and on a demo
// database that it may instead be dropped.
func (n *node) copyFrom(ctx context.Context, do string) string {
	do += ` (docs/operations.md, "Several processes")`
	var mode string
	if err := n.db.Reader().QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'mode'").Scan(&mode); err == nil && mode == string(registry.ModeDemo) {
		do += "; or, since it holds only demo data, drop this database and start again"
	}
	return do
}

// missingKeysError says that the log records keys the node's keyring lacks.
type missingKeysError struct {
	ids      []string // the missing keys' ids, in the log's order
	purposes []keyring.Purpose
}

// keys names the missing keys: "the document key ID" or "the keys ID (log), …".
func (e *missingKeysError) keys() string {
	if len(e.ids) == 1 {
		return fmt.Sprintf("the %s key %s", e.purposes[0], e.ids[0])
	}
	named := make([]string, len(e.ids))
	for i, id := range e.ids {
		named[i] = fmt.Sprintf("%s (%s)", id, e.purposes[i])
	}
	return "the keys " + strings.Join(named, ", ")
}

func (e *missingKeysError) Error() string {
	return "the keyring lacks " + e.keys() + " that the log records"
}

// them is "it" or "them".
func them(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// logKeys records in the transparency log every key of the node's keyring
// that the log does not know yet (the first start, a rotation): an operator
// event with the key's purpose, id and public-key hash. Every node on a
// database holds every key its log records (a rotation keeps the earlier
// ones, which verify what they signed; each node's health trust list
// publishes them all): a keyring that lacks one belongs to another node, or
// missed a rotation, and logKeys returns a *missingKeysError and records
// nothing, so that no node signs under keys the others do not publish.
// (checkKeys also checks the log keys against the newest checkpoint.)
func (n *node) logKeys(ctx context.Context, now time.Time) error {
	// Read and append in one transaction, so that two processes starting at
	// once on one database cannot both record the same key.
	return n.db.Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.QueryContext(ctx, "SELECT data FROM tlog_entries WHERE kind = $1 ORDER BY idx", int(tlog.KindOperator))
		if err != nil {
			return fmt.Errorf("read key events: %w", err)
		}
		known := map[string]bool{}
		missing := &missingKeysError{}
		for rows.Next() {
			var data []byte
			if err := rows.Scan(&data); err != nil {
				rows.Close()
				return err
			}
			if e, err := tlog.Parse(data); err == nil && e.Event == tlog.EventKeyAdded && !known[e.KeyID] {
				known[e.KeyID] = true
				// Only the node's own keys (merchants' keys are in the database).
				if slices.Contains(keyring.Purposes, keyring.Purpose(e.Subject)) && n.keys.ByID(e.KeyID) == nil {
					missing.ids, missing.purposes = append(missing.ids, e.KeyID), append(missing.purposes, keyring.Purpose(e.Subject))
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(missing.ids) > 0 {
			return missing
		}
		var entries [][]byte
		for _, k := range n.keys.All() {
			if known[k.ID] {
				continue
			}
			spki, err := x509.MarshalPKIXPublicKey(k.Public())
			if err != nil {
				return err
			}
			b, err := (&tlog.Entry{Kind: tlog.KindOperator, Time: now, Event: tlog.EventKeyAdded,
				Subject: string(k.Purpose), KeyID: k.ID, Hash: sha256.Sum256(spki)}).Marshal()
			if err != nil {
				return err
			}
			entries = append(entries, b)
		}
		if len(entries) == 0 {
			return nil
		}
		_, err = tlog.Sequence(ctx, tx, now, entries...)
		return err
	})
}

// nodesStopped takes, for a command that must run with every node
// stopped (migrate down, log reindex), the nodes' lease exclusively (every
// running node holds it shared, see openNode) and the log's integrator
// lease (which a node of an older civstack, without the nodes' lease,
// holds), and refuses if a node holds either. Until release, no node
// starts.
func nodesStopped(ctx context.Context, db *store.DB, s storageFlags) (release func(), err error) {
	var held []store.Lease
	release = func() {
		for _, l := range held {
			l.Release()
		}
	}
	for _, name := range []string{nodesLease, tlog.LeaseName} {
		l, err := db.TryLease(ctx, name)
		if err == nil && l == nil {
			err = fmt.Errorf("a civstack node is running on %s: stop every node first", s.describe())
		}
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, l)
	}
	return release, nil
}
