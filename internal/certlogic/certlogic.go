// Package certlogic is an evaluator and validator for CertLogic 1.3.3, the
// restricted JsonLogic dialect the EU DCC business rules are written in.
// Existing JsonLogic libraries do not match it (truthiness, "in",
// date-times, the custom operations), so this follows the specification
// itself: Compile validates an expression once and returns a tree that
// Eval runs against a data context of decoded JSON (nil, bool, float64,
// string, []any, map[string]any).
//
// Date-times exist only as the results of plusTime and dccDateOfBirth;
// they are DateTime values, neither truthy nor falsy. An invalid
// expression, or a type mismatch found while evaluating, is an error;
// rule engines treat an error as a failed rule.
package certlogic

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DateTime is a CertLogic date-time (millisecond precision, UTC).
type DateTime struct{ time.Time }

// MarshalJSON writes the date-time as RFC 3339 with milliseconds.
func (d DateTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.UTC().Format("2006-01-02T15:04:05.000Z"))
}

// Expr is a compiled CertLogic expression. It is safe for concurrent use.
type Expr struct{ n node }

// Eval evaluates the expression against data.
func (e *Expr) Eval(data any) (any, error) { return e.n.eval(data) }

// Compile validates expr (decoded JSON) and compiles it. The error is the
// first validation issue.
func Compile(expr any) (*Expr, error) {
	if issues := Validate(expr); len(issues) > 0 {
		return nil, issues[0]
	}
	n, err := compile(expr)
	if err != nil {
		return nil, err
	}
	return &Expr{n}, nil
}

// Issue is one validation problem: the offending (sub-)expression and why.
type Issue struct {
	Expr    any
	Message string
}

func (i Issue) Error() string {
	b, _ := json.Marshal(i.Expr)
	return fmt.Sprintf("certlogic: %s (in %s)", i.Message, truncate(string(b), 120))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

var pathRE = regexp.MustCompile(`^([^.]+(\.[^.]+)*)?$`)

var timeUnits = map[string]bool{"year": true, "month": true, "day": true, "hour": true}

func isInt(v any) bool {
	f, ok := v.(float64)
	return ok && f == math.Trunc(f) && !math.IsInf(f, 0)
}

// Validate returns every issue with expr, or none when it is a valid
// CertLogic expression.
func Validate(expr any) []Issue {
	var out []Issue
	add := func(e any, format string, args ...any) { out = append(out, Issue{e, fmt.Sprintf(format, args...)}) }
	var walk func(e any)
	walk = func(e any) {
		switch x := e.(type) {
		case nil:
			add(e, "invalid CertLogic expression")
		case bool, string:
		case float64:
			if !isInt(x) {
				add(e, "%v is a non-integer number", x)
			}
		case []any:
			for _, item := range x {
				walk(item)
			}
		case map[string]any:
			if len(x) != 1 {
				add(e, "expression object must have exactly one key, but it has %d", len(x))
				return
			}
			for op, arg := range x {
				if op == "var" {
					path, ok := arg.(string)
					if !ok {
						add(e, `not of the form { "var": "<path>" }`)
					} else if !pathRE.MatchString(path) {
						add(e, "data access path doesn't have a valid format: %s", path)
					}
					return
				}
				operands, ok := arg.([]any)
				if !ok {
					add(e, `operation not of the form { "<operator>": [ <values...> ] }`)
					return
				}
				arity := func(allowed ...int) bool {
					for _, n := range allowed {
						if len(operands) == n {
							return true
						}
					}
					add(e, "an operation with operator %q must have %s operands", op, joinInts(allowed))
					return false
				}
				switch op {
				case "if":
					arity(3)
				case "===", "in", "+", "extractFromUVCI":
					arity(2)
				case "and":
					if len(operands) < 2 {
						add(e, `an operation with operator "and" must have at least 2 operands`)
					}
				case "<", ">", "<=", ">=", "after", "before", "not-after", "not-before":
					arity(2, 3)
				case "!", "dccDateOfBirth":
					arity(1)
				case "reduce":
					arity(3)
				case "plusTime":
					if arity(3) {
						switch first := operands[0].(type) {
						case string:
						case map[string]any:
							if _, isVar := first["var"]; !isVar || len(first) != 1 {
								add(e, "the first operand of a plusTime operation must be a string literal or a var operation")
							}
						default:
							add(e, "the first operand of a plusTime operation must be a string literal or a var operation")
						}
						if !isInt(operands[1]) {
							add(e, "the second operand of a plusTime operation must be an integer")
						}
						if u, _ := operands[2].(string); !timeUnits[u] {
							add(e, `the third operand of a plusTime operation must be one of "year", "month", "day", "hour"`)
						}
					}
				default:
					add(e, "unrecognised operator: %q", op)
					return
				}
				if op == "extractFromUVCI" && len(operands) == 2 && !isInt(operands[1]) {
					add(e, "the index (second operand) of an extractFromUVCI operation must be an integer")
				}
				for _, o := range operands {
					walk(o)
				}
			}
		default:
			add(e, "invalid CertLogic expression")
		}
	}
	walk(expr)
	return out
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " or ")
}

// IsTruthy and IsFalsy implement CertLogic's disjoint notions; a value can
// be neither (a date-time, a number that is not an integer).
func IsTruthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x != ""
	case float64:
		return isInt(x) && x != 0
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return false
}

// IsFalsy reports whether v is false, null, "", 0, [] or {}.
func IsFalsy(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case float64:
		return x == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}
