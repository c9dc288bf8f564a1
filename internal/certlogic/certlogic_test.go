package certlogic

import (
	"encoding/json"
	"testing"
)

func TestPlusTimeLeapDays(t *testing.T) {
	for _, c := range []struct {
		unit, want string
	}{{"day", "2020-03-01T00:00:00.000Z"}, {"month", "2020-03-29T00:00:00.000Z"}, {"year", "2021-03-01T00:00:00.000Z"}} {
		e, err := Compile(map[string]any{"plusTime": []any{"2020-02-29", 1.0, c.unit}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.Eval(nil)
		if err != nil || canon(got) != `"`+c.want+`"` {
			t.Errorf("2020-02-29 + 1 %s = %s, %v; want %s", c.unit, canon(got), err, c.want)
		}
	}
	for in, want := range map[string]string{"1990": "1990-12-31", "1992-02": "1992-02-29", "2021-06-01T10:00:00.123456+2": "2021-06-01T08:00:00.123Z",
		"2021-06-01T10:00:00-0130": "2021-06-01T11:30:00.000Z", "2021-06-01T10:00:00+1:30": "2021-06-01T08:30:00.000Z"} {
		got, err := ParseDateTime(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if s := got.Format("2006-01-02T15:04:05.000Z"); s != want && got.Format("2006-01-02") != want {
			t.Errorf("%s → %s, want %s", in, s, want)
		}
	}
}

func TestErrorsAreErrors(t *testing.T) {
	for _, src := range []string{`{"if":[{"plusTime":["2021-01-01",0,"day"]},1,2]}`, `{"in":["a","abc"]}`, `{"<":[1,"2"]}`,
		`{"after":[1,2]}`, `{"reduce":[{"var":"x"},{"var":"current"},0]}`, `{"!":[{"dccDateOfBirth":["1990"]}]}`} {
		var expr any
		json.Unmarshal([]byte(src), &expr)
		e, err := Compile(expr)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if v, err := e.Eval(map[string]any{"x": "notarray"}); err == nil {
			t.Errorf("%s evaluated to %v, want an error", src, v)
		}
	}
}

func FuzzEval(f *testing.F) {
	f.Add(`{"and":[{"var":"a"},{"after":[{"plusTime":[{"var":"d"},1,"day"]},{"dccDateOfBirth":[{"var":"b"}]}]}]}`, `{"a":true,"d":"2021-01-01","b":"1990-02"}`)
	f.Add(`{"reduce":[{"var":"x"},{"+":[{"var":"accumulator"},1]},0]}`, `{"x":[1,2,3]}`)
	f.Add(`{"extractFromUVCI":[{"var":"u"},2]}`, `{"u":"URN:UVCI:01:NL:ABC#1"}`)
	f.Fuzz(func(t *testing.T, exprSrc, dataSrc string) {
		var expr, data any
		if json.Unmarshal([]byte(exprSrc), &expr) != nil || json.Unmarshal([]byte(dataSrc), &data) != nil {
			return
		}
		e, err := Compile(expr)
		if err != nil {
			return
		}
		_, _ = e.Eval(data)
	})
}
