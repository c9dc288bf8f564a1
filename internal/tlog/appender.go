package tlog

import (
	"context"
	"errors"
	"fmt"
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
	with  func(tx *store.Tx, index int64) error
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
	return a.AppendWith(ctx, entry, nil)
}

// AppendWith sequences one entry and runs with (may be nil) in the same
// transaction, with the entry's index: the event the entry records and
// the entry commit together or not at all. with must only write its own
// rows; if it fails, its batch is retried one append at a time, so one
// failing append never takes others down with it.
func (a *Appender) AppendWith(ctx context.Context, entry []byte, with func(tx *store.Tx, index int64) error) (int64, error) {
	if _, err := Parse(entry); err != nil {
		return 0, err
	}
	r := &appendReq{data: entry, with: with, done: make(chan struct{})}
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
	data := make([][]byte, len(batch))
	for i, r := range batch {
		data[i] = r.data
	}
	var first int64
	withs := false
	err := a.db.Tx(ctx, func(tx *store.Tx) error {
		var err error
		if first, err = Sequence(ctx, tx, a.now(), data...); err != nil {
			return err
		}
		for i, r := range batch {
			if r.with != nil {
				withs = true
				if err := r.with(tx, first+int64(i)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil && withs && len(batch) > 1 {
		for _, r := range batch {
			a.commit(ctx, []*appendReq{r})
		}
		return
	}
	if err != nil {
		err = fmt.Errorf("append: %w", err)
	}
	for i, r := range batch {
		r.index, r.err = first+int64(i), err
		close(r.done)
	}
	if err == nil && a.onCommit != nil {
		a.onCommit()
	}
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
