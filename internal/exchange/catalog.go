package exchange

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The catalog is what a request is decided on: the published services and
// the policies in force, with the organisations' names. Reading them from
// the database for every request was two thirds of a request's cost, and
// they change rarely, so the exchange keeps a snapshot:
//
//   - its own writes (publishing a service, adding or retiring a policy)
//     drop the snapshot at once;
//   - a snapshot is reloaded after catalogTTL, so that another node's
//     changes and renamed organisations show within that time;
//   - a request the snapshot would deny is decided again on a fresh one
//     (at most once a second), so a policy just added elsewhere is not
//     missed;
//   - a release commits only if its policy is still in force at that
//     moment: the check is inside the transaction that writes the access
//     record, so a retired policy never releases anything, stale snapshot
//     or not.
const (
	catalogTTL     = 30 * time.Second
	catalogRecheck = time.Second
)

type catalog struct {
	loaded   time.Time
	services map[string]*Service
	policies map[[2]string][]*Policy // (requester, service) → active policies, oldest first
	names    map[string]string
}

type catalogCache struct {
	mu  sync.Mutex // held while loading
	cur atomic.Pointer[catalog]
	gen atomic.Int64 // counts drops: a load that a drop overtook is not kept
}

// drop forgets the snapshot (after the exchange's own writes).
func (c *catalogCache) drop() {
	c.gen.Add(1)
	c.cur.Store(nil)
}

func (c *catalog) fresh(now time.Time, maxAge time.Duration) bool {
	return c != nil && now.Sub(c.loaded) < maxAge && !now.Before(c.loaded)
}

// catalog returns a snapshot no older than catalogTTL, or, with fresh, one
// loaded in the last catalogRecheck.
func (x *Exchange) catalog(ctx context.Context, fresh bool) (*catalog, error) {
	maxAge := catalogTTL
	if fresh {
		maxAge = catalogRecheck
	}
	c := &x.cat
	if cur := c.cur.Load(); cur.fresh(x.now(), maxAge) {
		return cur, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := x.now()
	if cur := c.cur.Load(); cur.fresh(now, maxAge) {
		return cur, nil // loaded while this one waited
	}
	gen := c.gen.Load()
	ss, err := x.services(ctx, `WHERE withdrawn_at IS NULL`)
	if err != nil {
		return nil, err
	}
	ps, err := x.policies(ctx, `WHERE active = 1 ORDER BY created_at`)
	if err != nil {
		return nil, err
	}
	cat := &catalog{loaded: now, services: map[string]*Service{}, policies: map[[2]string][]*Policy{}, names: map[string]string{}}
	for _, s := range ss {
		cat.services[s.ID] = s
	}
	for _, p := range ps {
		k := [2]string{p.Requester, p.Service}
		cat.policies[k] = append(cat.policies[k], p)
		cat.names[p.Requester] = p.RequesterName
	}
	if c.gen.Load() == gen {
		c.cur.Store(cat)
	}
	return cat, nil
}

// name is an organisation's name, from the snapshot when it has it.
func (x *Exchange) name(ctx context.Context, cat *catalog, org string) string {
	if n, ok := cat.names[org]; ok {
		return n
	}
	return x.names(ctx, org)
}
