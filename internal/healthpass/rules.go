// Package healthpass owns civstack's health pass: the published rules that
// turn a questionnaire into a green, yellow or red health code, the daily
// check-ins that bring a code back to green, appeals and the health
// officer's decisions (logged in the transparency log, the decision and
// never the answers), the EU DCCs the health authority issues to wallets,
// and the operator's signed trust list of document signing certificates.
// Verification (package dcc underneath) is offline and writes nothing.
package healthpass

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/civstack/civstack/internal/certlogic"
)

//go:embed rules.json
var defaultRules []byte

// DefaultRules returns the rules a new node starts with.
func DefaultRules() []byte { return append([]byte(nil), defaultRules...) }

// Colour of a health code.
type Colour string

// The colours.
const (
	Green  Colour = "green"
	Yellow Colour = "yellow"
	Red    Colour = "red"
)

// Rule is one published rule.
type Rule struct {
	ID     string          `json:"id"`
	Colour Colour          `json:"color,omitempty"` // health code rules
	Type   string          `json:"type,omitempty"`  // certificate rules: v, t or r
	Reason string          `json:"reason"`
	Logic  json.RawMessage `json:"logic"`
	expr   *certlogic.Expr
}

// Rules is a rules file: health code rules tried in order, and acceptance
// rules for EU certificates.
type Rules struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Published string `json:"published"`
	About     string `json:"about"`
	Days      struct {
		Yellow int `json:"yellow"`
		Red    int `json:"red"`
	} `json:"days"`
	Code         []Rule `json:"code"`
	Certificates []Rule `json:"certificates"`
	// Digest is the hex SHA-256 of the file, shown beside the version.
	Digest string `json:"-"`
	raw    []byte
}

// Raw returns the rules file as published.
func (r *Rules) Raw() []byte { return r.raw }

// ParseRules reads and compiles a rules file.
func ParseRules(b []byte) (*Rules, error) {
	var r Rules
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("health rules: %w", err)
	}
	if r.Version == "" {
		return nil, errors.New("health rules: no version")
	}
	if r.Days.Yellow < 1 || r.Days.Red < 1 {
		return nil, errors.New("health rules: days.yellow and days.red must be at least 1")
	}
	compile := func(list []Rule, what string) error {
		for i := range list {
			var logic any
			if err := json.Unmarshal(list[i].Logic, &logic); err != nil {
				return fmt.Errorf("health rules: %s rule %s: %w", what, list[i].ID, err)
			}
			e, err := certlogic.Compile(logic)
			if err != nil {
				return fmt.Errorf("health rules: %s rule %s: %w", what, list[i].ID, err)
			}
			list[i].expr = e
		}
		return nil
	}
	for _, c := range r.Code {
		if c.Colour != Red && c.Colour != Yellow {
			return nil, fmt.Errorf("health rules: rule %s: color %q is neither red nor yellow", c.ID, c.Colour)
		}
	}
	if err := compile(r.Code, "health code"); err != nil {
		return nil, err
	}
	if err := compile(r.Certificates, "certificate"); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	r.Digest = hex.EncodeToString(sum[:])
	r.raw = append([]byte(nil), b...)
	return &r, nil
}

// LoadRules reads the rules file at path, writing the default rules there
// first when there is none.
func LoadRules(path string) (*Rules, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("health rules: %w", err)
		}
		if err := os.WriteFile(path, defaultRules, 0o644); err != nil {
			return nil, fmt.Errorf("health rules: %w", err)
		}
		b = defaultRules
	} else if err != nil {
		return nil, fmt.Errorf("health rules: %w", err)
	}
	return ParseRules(b)
}

// Answers are a questionnaire's answers. They stay with the citizen and
// the health authority; they are never put in a pass or the log.
type Answers struct {
	Symptoms bool   `json:"symptoms"` // fever, cough, loss of taste or smell
	Contact  bool   `json:"contact"`  // close contact with a confirmed case in the last 7 days
	Travel   bool   `json:"travel"`   // travel from an area with community transmission
	Test     string `json:"test"`     // "none", "negative" or "positive" (last 14 days)
}

// Validate checks the answers' values.
func (a Answers) Validate() error {
	switch a.Test {
	case "none", "negative", "positive":
		return nil
	}
	return fmt.Errorf("test result %q is not none, negative or positive", a.Test)
}

// Decision is what the rules decided, with the reason in plain words.
type Decision struct {
	Colour       Colour `json:"color"`
	RuleID       string `json:"rule"` // "" for green
	Reason       string `json:"reason"`
	RulesVersion string `json:"rules_version"`
}

// Decide applies the health code rules to answers; the first rule that
// applies decides, and none means green. A rule that fails to evaluate is
// an error (rules are published and tested; a broken one must not
// silently pass anyone).
func (r *Rules) Decide(a Answers, now time.Time) (Decision, error) {
	if err := a.Validate(); err != nil {
		return Decision{}, err
	}
	data := map[string]any{
		"answers":  map[string]any{"symptoms": a.Symptoms, "contact": a.Contact, "travel": a.Travel, "test": a.Test},
		"external": map[string]any{"validationClock": now.UTC().Format(time.RFC3339)},
	}
	for _, rule := range r.Code {
		v, err := rule.expr.Eval(data)
		if err != nil {
			return Decision{}, fmt.Errorf("health rule %s: %w", rule.ID, err)
		}
		if certlogic.IsTruthy(v) {
			return Decision{rule.Colour, rule.ID, rule.Reason, r.Version}, nil
		}
	}
	return Decision{Green, "", "No rule applies to your answers: move freely.", r.Version}, nil
}

// DaysFor is how many consecutive days of normal check-ins bring colour c
// back to green (0 for green).
func (r *Rules) DaysFor(c Colour) int {
	switch c {
	case Yellow:
		return r.Days.Yellow
	case Red:
		return r.Days.Red
	}
	return 0
}

// CheckCertificate applies the acceptance rules for the certificate's
// type to a DCC payload at a validation time; the error names the first
// rule that failed.
func (r *Rules) CheckCertificate(doc map[string]any, typ string, at time.Time) error {
	data := map[string]any{"payload": doc, "external": map[string]any{"validationClock": at.UTC().Format(time.RFC3339)}}
	for _, rule := range r.Certificates {
		if rule.Type != "" && rule.Type != typ {
			continue
		}
		v, err := rule.expr.Eval(data)
		if err != nil {
			return fmt.Errorf("rules: %s could not be evaluated (%v)", rule.ID, err)
		}
		if v != true {
			return fmt.Errorf("rules: %s: %s", rule.ID, rule.Reason)
		}
	}
	return nil
}
