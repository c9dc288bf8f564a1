package tlog

import (
	"context"
	"log/slog"
	"time"

	"github.com/civstack/civstack/internal/store"
)

// LeaseName is the lease the integrating process holds.
const LeaseName = "tlog-integrator"

// Integrator keeps the log's checkpoint current. Every civstack process runs
// one; only the process holding the lease integrates, and another takes over
// within a few intervals when that process dies.
type Integrator struct {
	Log    *Log
	DB     *store.DB
	Every  time.Duration // how often to look for new entries
	Logger *slog.Logger
	// OnCheckpoint, if set, is called after each checkpoint this process signs.
	OnCheckpoint func(Checkpoint)
	wake         chan struct{}
}

// NewIntegrator returns an integrator for l in db that looks for new entries
// every interval, and at once when Wake is called.
func NewIntegrator(l *Log, db *store.DB, every time.Duration, logger *slog.Logger) *Integrator {
	return &Integrator{Log: l, DB: db, Every: every, Logger: logger, wake: make(chan struct{}, 1)}
}

// Wake asks the integrator to look for new entries now. It never blocks.
func (in *Integrator) Wake() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// Run integrates until ctx ends.
func (in *Integrator) Run(ctx context.Context) {
	var lease store.Lease
	defer func() {
		if lease != nil {
			lease.Release()
		}
	}()
	tick := time.NewTicker(in.Every)
	defer tick.Stop()
	for {
		if lease == nil {
			l, err := in.DB.TryLease(ctx, LeaseName)
			if err != nil {
				in.Logger.Warn("integrator lease", "err", err)
			}
			if l != nil {
				in.Logger.Info("this process integrates the transparency log")
				lease = l
			}
		}
		if lease != nil {
			if err := lease.Check(ctx); err != nil {
				in.Logger.Warn("integrator lease lost", "err", err)
				lease.Release()
				lease = nil
			} else if pending, err := in.Log.pending(ctx); err != nil {
				in.Logger.Warn("integrator", "err", err)
			} else if pending {
				cp, made, err := in.Log.Integrate(ctx)
				if err == nil {
					in.Logger.Debug("checkpoint", "size", cp.Size)
					if made && in.OnCheckpoint != nil {
						in.OnCheckpoint(cp)
					}
					continue // there may be more: look again at once
				}
				if ctx.Err() == nil {
					in.Logger.Error("integrate", "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-in.wake:
		}
	}
}

// pending reports, with a cheap read, whether Integrate has work.
func (l *Log) pending(ctx context.Context) (bool, error) {
	var next, done, have int64
	err := l.db.QueryRowRead(ctx, `SELECT n.value, i.value,
		(SELECT COUNT(*) FROM tlog_checkpoints c WHERE c.size = i.value)
		FROM tlog_counters n, tlog_counters i WHERE n.name = 'next' AND i.name = 'integrated'`).Scan(&next, &done, &have)
	if err != nil {
		return false, err
	}
	return next > done || have == 0, nil
}
