package certlogic

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

type node interface {
	eval(data any) (any, error)
}

type (
	literal  struct{ v any }
	array    []node
	varNode  []string // path fragments; empty = the whole context
	ifNode   struct{ guard, then, els node }
	andNode  []node
	notNode  struct{ x node }
	eqNode   struct{ l, r node }
	inNode   struct{ l, r node }
	plusNode struct{ l, r node }
	cmpNode  struct {
		op       string
		operands []node
		dates    bool
	}
	plusTimeNode struct {
		x      node
		amount int
		unit   string
	}
	dobNode     struct{ x node }
	extractNode struct {
		x     node
		index int
	}
	reduceNode struct{ operand, lambda, initial node }
)

func compile(e any) (node, error) {
	switch x := e.(type) {
	case bool, string, float64:
		return literal{x}, nil
	case []any:
		out := make(array, len(x))
		for i, item := range x {
			n, err := compile(item)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		for op, arg := range x {
			if op == "var" {
				p := arg.(string)
				if p == "" {
					return varNode(nil), nil
				}
				return varNode(strings.Split(p, ".")), nil
			}
			raw := arg.([]any)
			ns := make([]node, len(raw))
			for i, o := range raw {
				n, err := compile(o)
				if err != nil {
					return nil, err
				}
				ns[i] = n
			}
			switch op {
			case "if":
				return ifNode{ns[0], ns[1], ns[2]}, nil
			case "and":
				return andNode(ns), nil
			case "!":
				return notNode{ns[0]}, nil
			case "===":
				return eqNode{ns[0], ns[1]}, nil
			case "in":
				return inNode{ns[0], ns[1]}, nil
			case "+":
				return plusNode{ns[0], ns[1]}, nil
			case "<", ">", "<=", ">=":
				return cmpNode{op, ns, false}, nil
			case "after", "before", "not-after", "not-before":
				return cmpNode{op, ns, true}, nil
			case "plusTime":
				return plusTimeNode{ns[0], int(raw[1].(float64)), raw[2].(string)}, nil
			case "dccDateOfBirth":
				return dobNode{ns[0]}, nil
			case "extractFromUVCI":
				return extractNode{ns[0], int(raw[1].(float64))}, nil
			case "reduce":
				return reduceNode{ns[0], ns[1], ns[2]}, nil
			}
		}
	}
	return nil, fmt.Errorf("certlogic: cannot compile %v", e)
}

func (n literal) eval(any) (any, error) { return n.v, nil }

func (n array) eval(data any) (any, error) {
	out := make([]any, len(n))
	for i, item := range n {
		v, err := item.eval(data)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (n varNode) eval(data any) (any, error) {
	cur := data
	for _, f := range n {
		switch x := cur.(type) {
		case map[string]any:
			cur = x[f]
		case []any:
			i, err := strconv.Atoi(f)
			if err != nil || i < 0 || i >= len(x) {
				return nil, nil
			}
			cur = x[i]
		default:
			return nil, nil
		}
	}
	return cur, nil
}

var errNeither = errors.New("certlogic: value is neither truthy nor falsy")

func (n ifNode) eval(data any) (any, error) {
	g, err := n.guard.eval(data)
	if err != nil {
		return nil, err
	}
	switch {
	case IsTruthy(g):
		return n.then.eval(data)
	case IsFalsy(g):
		return n.els.eval(data)
	}
	return nil, fmt.Errorf("if: guard %w", errNeither)
}

func (n andNode) eval(data any) (any, error) {
	var acc any = true
	for _, o := range n {
		switch {
		case IsFalsy(acc):
			return acc, nil
		case !IsTruthy(acc):
			return nil, fmt.Errorf("and: operand %w", errNeither)
		}
		v, err := o.eval(data)
		if err != nil {
			return nil, err
		}
		acc = v
	}
	return acc, nil
}

func (n notNode) eval(data any) (any, error) {
	v, err := n.x.eval(data)
	if err != nil {
		return nil, err
	}
	switch {
	case IsFalsy(v):
		return true, nil
	case IsTruthy(v):
		return false, nil
	}
	return nil, fmt.Errorf("!: operand %w", errNeither)
}

func (n eqNode) eval(data any) (any, error) {
	l, r, err := eval2(n.l, n.r, data)
	if err != nil {
		return nil, err
	}
	return strictEqual(l, r), nil
}

// strictEqual is JavaScript's === on JSON values: primitives by value,
// arrays, objects and date-times never equal (they are distinct objects).
func strictEqual(l, r any) bool {
	switch a := l.(type) {
	case nil:
		return r == nil
	case bool:
		b, ok := r.(bool)
		return ok && a == b
	case string:
		b, ok := r.(string)
		return ok && a == b
	case float64:
		b, ok := r.(float64)
		return ok && a == b
	}
	return false
}

func eval2(l, r node, data any) (any, any, error) {
	a, err := l.eval(data)
	if err != nil {
		return nil, nil, err
	}
	b, err := r.eval(data)
	if err != nil {
		return nil, nil, err
	}
	return a, b, nil
}

func (n inNode) eval(data any) (any, error) {
	l, r, err := eval2(n.l, n.r, data)
	if err != nil {
		return nil, err
	}
	arr, ok := r.([]any)
	if !ok {
		return nil, fmt.Errorf("in: right operand is %s, not an array", typeOf(r))
	}
	for _, item := range arr {
		if strictEqual(l, item) {
			return true, nil
		}
	}
	return false, nil
}

func (n plusNode) eval(data any) (any, error) {
	l, r, err := eval2(n.l, n.r, data)
	if err != nil {
		return nil, err
	}
	if !isInt(l) || !isInt(r) {
		return nil, fmt.Errorf("+: operands %s and %s are not both integers", typeOf(l), typeOf(r))
	}
	return l.(float64) + r.(float64), nil
}

func (n cmpNode) eval(data any) (any, error) {
	vals := make([]any, len(n.operands))
	for i, o := range n.operands {
		v, err := o.eval(data)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	key := func(v any) (float64, bool) {
		if n.dates {
			d, ok := v.(DateTime)
			return float64(d.UnixMilli()), ok
		}
		f, _ := v.(float64)
		return f, isInt(v)
	}
	ks := make([]float64, len(vals))
	for i, v := range vals {
		k, ok := key(v)
		if !ok {
			want := "an integer"
			if n.dates {
				want = "a date-time"
			}
			return nil, fmt.Errorf("%s: operand %d is %s, not %s", n.op, i+1, typeOf(v), want)
		}
		ks[i] = k
	}
	for i := 0; i+1 < len(ks); i++ {
		a, b := ks[i], ks[i+1]
		var ok bool
		switch n.op {
		case "<", "before":
			ok = a < b
		case ">", "after":
			ok = a > b
		case "<=", "not-after":
			ok = a <= b
		case ">=", "not-before":
			ok = a >= b
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

func (n plusTimeNode) eval(data any) (any, error) {
	v, err := n.x.eval(data)
	if err != nil {
		return nil, err
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("plusTime: operand is %s, not a date(-time) string", typeOf(v))
	}
	t, err := ParseDateTime(s)
	if err != nil {
		return nil, err
	}
	switch n.unit {
	case "year":
		t = time.Date(t.Year()+n.amount, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	case "month":
		t = time.Date(t.Year(), t.Month()+time.Month(n.amount), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	case "day":
		t = time.Date(t.Year(), t.Month(), t.Day()+n.amount, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	case "hour":
		t = t.Add(time.Duration(n.amount) * time.Hour)
	}
	return DateTime{t}, nil
}

func (n dobNode) eval(data any) (any, error) {
	v, err := n.x.eval(data)
	if err != nil {
		return nil, err
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("dccDateOfBirth: operand is %s, not a string", typeOf(v))
	}
	t, err := ParseDateTime(s)
	if err != nil || len(s) > 10 {
		return nil, fmt.Errorf("dccDateOfBirth: %q is not YYYY, YYYY-MM or YYYY-MM-DD", s)
	}
	return DateTime{t}, nil
}

func (n extractNode) eval(data any) (any, error) {
	v, err := n.x.eval(data)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("extractFromUVCI: operand is %s, not a string or null", typeOf(v))
	}
	s = strings.TrimPrefix(s, "URN:UVCI:")
	frags := splitUVCI(s)
	if n.index < 0 || n.index >= len(frags) {
		return nil, nil
	}
	return frags[n.index], nil
}

func splitUVCI(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '/' || s[i] == '#' || s[i] == ':' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func (n reduceNode) eval(data any) (any, error) {
	v, err := n.operand.eval(data)
	if err != nil {
		return nil, err
	}
	acc, err := n.initial.eval(data)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return acc, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("reduce: operand is %s, not an array", typeOf(v))
	}
	for _, item := range arr {
		if acc, err = n.lambda.eval(map[string]any{"current": item, "accumulator": acc}); err != nil {
			return nil, err
		}
	}
	return acc, nil
}

func typeOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case DateTime:
		return "a date-time"
	}
	return fmt.Sprintf("%T", v)
}

var dateTimeRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{1,2}(?::?\d{2})?)?)?)?)?$`)

// ParseDateTime reads the date and date-time formats CertLogic allows:
// YYYY and YYYY-MM (the last day they can mean, as dccDateOfBirth),
// YYYY-MM-DD, and date-times with or without seconds' fractions (cut to
// milliseconds) and with Z, ±h, ±hh, ±hmm, ±hhmm, ±h:mm or ±hh:mm (none
// means Z).
func ParseDateTime(s string) (time.Time, error) {
	m := dateTimeRE.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, fmt.Errorf("certlogic: %q is not a date or date-time CertLogic accepts", s)
	}
	num := func(x string) int { n, _ := strconv.Atoi(x); return n }
	year := num(m[1])
	switch {
	case m[2] == "":
		return time.Date(year, 12, 31, 0, 0, 0, 0, time.UTC), nil
	case m[3] == "":
		return time.Date(year, time.Month(num(m[2]))+1, 0, 0, 0, 0, 0, time.UTC), nil
	}
	ms := 0
	if f := m[7]; f != "" {
		f = (f + "00")[:3]
		ms = num(f)
	}
	t := time.Date(year, time.Month(num(m[2])), num(m[3]), num(m[4]), num(m[5]), num(m[6]), ms*1e6, time.UTC)
	if z := m[8]; z != "" && z != "Z" {
		sign := 1
		if z[0] == '-' {
			sign = -1
		}
		z = z[1:]
		var h, mm int
		if i := strings.IndexByte(z, ':'); i >= 0 {
			h, mm = num(z[:i]), num(z[i+1:])
		} else if len(z) <= 2 {
			h = num(z)
		} else {
			h, mm = num(z[:len(z)-2]), num(z[len(z)-2:])
		}
		t = t.Add(-time.Duration(sign) * (time.Duration(h)*time.Hour + time.Duration(mm)*time.Minute))
	}
	return t, nil
}
