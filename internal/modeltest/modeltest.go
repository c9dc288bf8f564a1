// Package modeltest runs model-based tests: random sequences of
// operations (pgregory.net/rapid) checked step by step against a model,
// round after round until the runs have reached, between them, every
// outcome the test names, so that a test cannot pass by never getting
// anywhere. It is imported by tests only.
package modeltest

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"pgregory.net/rapid"
)

// MaxRounds bounds the rounds Check runs (each round is rapid's
// -rapid.checks runs, 100 by default).
const MaxRounds = 5

// Outcomes counts what the runs reached. Safe for concurrent use.
type Outcomes struct {
	mu   sync.Mutex
	seen map[string]int
}

// Saw counts one outcome.
func (o *Outcomes) Saw(outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen == nil {
		o.seen = map[string]int{}
	}
	o.seen[outcome]++
}

// missed lists the outcomes of want not reached yet.
func (o *Outcomes) missed(want []string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(want), func(w string) bool { return o.seen[w] > 0 })
}

func (o *Outcomes) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var s string
	for _, k := range slices.Sorted(maps.Keys(o.seen)) {
		s += fmt.Sprintf(" %s:%d", k, o.seen[k])
	}
	return s
}

// Check runs run as a rapid property, round after round, until the runs
// have reached every outcome in want (at most MaxRounds rounds, or until
// one fails); it fails t if some outcome was never reached.
func Check(t *testing.T, want []string, run func(rt *rapid.T, o *Outcomes)) {
	t.Helper()
	o := &Outcomes{}
	var missed []string
	for round := 1; round <= MaxRounds; round++ {
		rapid.Check(t, func(rt *rapid.T) { run(rt, o) })
		missed = o.missed(want)
		t.Logf("outcomes after round %d:%s", round, o)
		if len(missed) == 0 || t.Failed() {
			return
		}
	}
	t.Errorf("no run reached %q", missed)
}
