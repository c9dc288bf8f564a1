package tlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/store"
)

// MaxBatch is the most entries one group commit writes.
const MaxBatch = 8192

// ErrClosed is returned by Append after the appender stopped.
var ErrClosed = errors.New("log appender stopped")

// Appender sequences entries that arrive on their own (not inside another
// event's transaction) with group commit: appends that arrive while a
// transaction is being written wait and go together into the next one, so
// that many concurrent writers share one commit and one disk sync.
type Appender struct {
	db       *store.DB
	now      func() time.Time
	reqs     chan *appendReq
	stopped  chan struct{}
	onCommit func()
}

type appendReq struct {
	data  []byte
	w     Write
	index int64
	err   error
	done  chan struct{}
}

// NewAppender returns an Appender; onCommit (may be nil) is called after each
// committed batch, e.g. to wake the integrator. Call Run to start it.
func NewAppender(db *store.DB, now func() time.Time, onCommit func()) *Appender {
	return &Appender{db: db, now: now, reqs: make(chan *appendReq, MaxBatch), stopped: make(chan struct{}), onCommit: onCommit}
}

// Append sequences one entry and returns its index once it is committed.
func (a *Appender) Append(ctx context.Context, entry []byte) (int64, error) {
	return a.AppendWrite(ctx, entry, Write{})
}

// AppendWith sequences one entry and runs with (may be nil) in the same
// transaction, with the entry's index: the event the entry records and
// the entry commit together or not at all. with must only write its own
// rows; if it fails, its batch is retried one append at a time, so one
// failing append never takes others down with it.
func (a *Appender) AppendWith(ctx context.Context, entry []byte, with func(tx *store.Tx, index int64) error) (int64, error) {
	return a.AppendWrite(ctx, entry, Write{With: with})
}

// Write is what an entry commits with; every part is optional.
//
// Check must return a row for the entry to commit at all (e.g. that the
// policy a release was decided on is still in force); if it returns none,
// the entry is left out of the batch and its append fails with
// ErrCheckFailed. A batch runs each distinct check once.
//
// Read, if set, is run once per batch for the writes that carry it
// (compared by identity), with their Items, before anything is written:
// a batch of releases reads what it discloses in one query, in the
// transaction that records the disclosure.
//
// Opening, if set, is stored in the entry's row and never published: the
// private data the entry's commitment opens to (a data access's record),
// which then commits in the entry's own row rather than in one of its own.
// Readers find it with Opening or by querying tlog_entries.opening.
//
// With runs last, as for AppendWith.
type Write struct {
	Check   *Check
	Read    BatchRead
	Item    any
	Opening []byte
	With    func(tx *store.Tx, index int64) error
}

// BatchRead reads, in a batch's transaction, what its writes need. It
// must not write; if it fails, the batch is retried one write at a time.
type BatchRead interface {
	ReadBatch(ctx context.Context, tx *store.Tx, items []any) error
}

// Check is a query, with its arguments, that must return a row.
type Check struct {
	Query string
	Args  []any
}

// ErrCheckFailed is returned for an entry whose Write.Check returned no row.
var ErrCheckFailed = errors.New("the condition the entry was written on no longer holds")

// AppendWrite sequences one entry with what it commits with (see Write)
// and returns its index once it is committed. If the batch's transaction
// fails, it is retried one append at a time.
func (a *Appender) AppendWrite(ctx context.Context, entry []byte, w Write) (int64, error) {
	if _, err := Parse(entry); err != nil {
		return 0, err
	}
	r := &appendReq{data: entry, w: w, done: make(chan struct{})}
	select {
	case a.reqs <- r:
	case <-a.stopped:
		return 0, ErrClosed
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case <-r.done:
		return r.index, r.err
	case <-ctx.Done():
		// The entry may still be committed; the caller cannot know its index.
		return 0, ctx.Err()
	}
}

// Run writes batches until ctx ends; appends waiting then fail with ErrClosed.
func (a *Appender) Run(ctx context.Context) {
	defer close(a.stopped)
	batch := make([]*appendReq, 0, MaxBatch)
	for {
		select {
		case <-ctx.Done():
			a.drain()
			return
		case r := <-a.reqs:
			batch = append(batch[:0], r)
		}
	more:
		for len(batch) < MaxBatch {
			select {
			case r := <-a.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		a.commit(ctx, batch)
	}
}

func (a *Appender) commit(ctx context.Context, batch []*appendReq) {
	var first int64
	failed := make([]bool, len(batch))
	writes := false
	err := a.db.Tx(ctx, func(tx *store.Tx) error {
		clear(failed)
		checks := map[string]bool{}
		live := make([]*appendReq, 0, len(batch))
		data := make([][]byte, 0, len(batch))
		var openings [][]byte
		for i, r := range batch {
			if c := r.w.Check; c != nil {
				key := checkKey(c)
				ok, seen := checks[key]
				if !seen {
					var err error
					if ok, err = check(ctx, tx, c); err != nil {
						return err
					}
					checks[key] = ok
				}
				if !ok {
					failed[i] = true
					continue
				}
			}
			live = append(live, r)
			data = append(data, r.data)
			if r.w.Opening != nil && openings == nil {
				openings = make([][]byte, len(data)-1, len(batch))
			}
			if openings != nil {
				openings = append(openings, r.w.Opening)
			}
		}
		if len(live) == 0 {
			return nil
		}
		if err := readBatch(ctx, tx, live); err != nil {
			return err
		}
		var err error
		if first, err = sequence(ctx, tx, a.now(), data, openings); err != nil {
			return err
		}
		for i, r := range live {
			if r.w.With != nil {
				writes = true
				if err := r.w.With(tx, first+int64(i)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil && (writes || reads(batch)) && len(batch) > 1 {
		for _, r := range batch {
			a.commit(ctx, []*appendReq{r})
		}
		return
	}
	if err != nil {
		err = fmt.Errorf("append: %w", err)
	}
	next := first
	for i, r := range batch {
		switch {
		case err != nil:
			r.err = err
		case failed[i]:
			r.err = ErrCheckFailed
		default:
			r.index = next
			next++
		}
		close(r.done)
	}
	if err == nil && a.onCommit != nil {
		a.onCommit()
	}
}

func reads(batch []*appendReq) bool {
	return slices.ContainsFunc(batch, func(r *appendReq) bool { return r.w.Read != nil })
}

// readBatch runs each distinct BatchRead once with its writes' items.
func readBatch(ctx context.Context, tx *store.Tx, live []*appendReq) error {
	var readers []BatchRead
	items := map[BatchRead][]any{}
	for _, r := range live {
		if r.w.Read == nil {
			continue
		}
		if _, ok := items[r.w.Read]; !ok {
			readers = append(readers, r.w.Read)
		}
		items[r.w.Read] = append(items[r.w.Read], r.w.Item)
	}
	for _, br := range readers {
		if err := br.ReadBatch(ctx, tx, items[br]); err != nil {
			return fmt.Errorf("read: %w", err)
		}
	}
	return nil
}

// checkKey identifies a check by its query and arguments.
func checkKey(c *Check) string {
	var b strings.Builder
	b.WriteString(c.Query)
	for _, a := range c.Args {
		if s, ok := a.(string); ok {
			b.WriteString("\x00s" + strconv.Itoa(len(s)) + ":" + s)
		} else {
			fmt.Fprintf(&b, "\x00%T:%v", a, a)
		}
	}
	return b.String()
}

func check(ctx context.Context, tx *store.Tx, c *Check) (bool, error) {
	rows, err := tx.QueryPrepared(ctx, c.Query, c.Args...)
	if err != nil {
		return false, fmt.Errorf("check: %w", err)
	}
	defer rows.Close()
	ok := rows.Next()
	return ok, rows.Err()
}

func (a *Appender) drain() {
	for {
		select {
		case r := <-a.reqs:
			r.err = ErrClosed
			close(r.done)
		default:
			return
		}
	}
}
