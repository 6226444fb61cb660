package asl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

func TestParseErrors(t *testing.T) {
	task := func(extra string) string {
		return one(`{"Type":"Task","Resource":"function:f",` + extra + `"End":true}`)
	}
	cases := []struct {
		name, def, field, msg string
	}{
		{"not JSON", `{`, "", "must be a JSON object"},
		{"StartAt missing", `{"States":{"A":{"Type":"Succeed"}}}`, "StartAt", "required"},
		{"StartAt unknown", `{"StartAt":"B","States":{"A":{"Type":"Succeed"}}}`, "StartAt", `"B"`},
		{"States missing", `{"StartAt":"A"}`, "States", "required"},
		{"States empty", `{"StartAt":"A","States":{}}`, "States", "at least one"},
		{"unknown top field", `{"StartAt":"A","Bogus":1,"States":{"A":{"Type":"Succeed"}}}`, "Bogus", "unknown field"},
		{"bad TimeoutSeconds", `{"StartAt":"A","TimeoutSeconds":0,"States":{"A":{"Type":"Succeed"}}}`, "TimeoutSeconds", "at least 1"},
		{"unknown type", one(`{"Type":"Sleep","End":true}`), "States.S.Type", `unknown state type "Sleep"`},
		{"missing Type", one(`{"End":true}`), "States.S.Type", "required"},
		{"unknown field", one(`{"Type":"Pass","Reslt":1,"End":true}`), "States.S.Reslt", "unknown field for a Pass state"},
		{"field of another type", one(`{"Type":"Pass","Resource":"x","End":true}`), "States.S.Resource", "unknown field"},
		{"missing Next", one(`{"Type":"Pass"}`), "States.S.Next", "required unless"},
		{"Next and End", `{"StartAt":"S","States":{"S":{"Type":"Pass","Next":"T","End":true},"T":{"Type":"Succeed"}}}`, "States.S.End", "not both"},
		{"Next to nowhere", `{"StartAt":"ChargeCard","States":{"ChargeCard":{"Type":"Pass","Next":"Ship"}}}`, "States.ChargeCard.Next", `"Ship"`},
		{"unreachable", `{"StartAt":"A","States":{"A":{"Type":"Succeed"},"Orphan":{"Type":"Succeed"}}}`, "States.Orphan", "cannot be reached"},
		{"long name", `{"StartAt":"A","States":{"A":{"Type":"Succeed"},"` + strings.Repeat("x", 81) + `":{"Type":"Succeed"}}}`, "States." + strings.Repeat("x", 81), "80"},
		{"Succeed with Next", `{"StartAt":"A","States":{"A":{"Type":"Succeed","Next":"A"}}}`, "States.A.Next", "unknown field"},
		{"bad InputPath", one(`{"Type":"Pass","InputPath":"a.b","End":true}`), "States.S.InputPath", "must start with $"},
		{"filter path", one(`{"Type":"Pass","InputPath":"$.a[?(@.x)]","End":true}`), "States.S.InputPath", "filter"},
		{"ResultPath wildcard", one(`{"Type":"Pass","ResultPath":"$.a[*]","End":true}`), "States.S.ResultPath", "reference path"},
		{"ResultPath context", one(`{"Type":"Pass","ResultPath":"$$.Execution","End":true}`), "States.S.ResultPath", "context object"},
		{"Parameters path bad", one(`{"Type":"Pass","Parameters":{"a.$":"nope"},"End":true}`), "States.S.Parameters.a.$", "must start with $"},
		{"Parameters .$ not string", one(`{"Type":"Pass","Parameters":{"a":{"b.$":3}},"End":true}`), "States.S.Parameters.a.b.$", "must be a string"},
		{"Parameters not object", one(`{"Type":"Pass","Parameters":[1],"End":true}`), "States.S.Parameters", "object"},
		{"unknown intrinsic", one(`{"Type":"Pass","Parameters":{"a.$":"States.Nope(1)"},"End":true}`), "States.S.Parameters.a.$", "unknown intrinsic function"},
		{"intrinsic arity", one(`{"Type":"Pass","Parameters":{"a.$":"States.ArrayLength($.a, 1)"},"End":true}`), "States.S.Parameters.a.$", "takes 1 arguments, got 2"},
		{"intrinsic unterminated", one(`{"Type":"Pass","Parameters":{"a.$":"States.Format('x"},"End":true}`), "States.S.Parameters.a.$", "unterminated"},
		{"intrinsic trailing", one(`{"Type":"Pass","Parameters":{"a.$":"States.UUID() x"},"End":true}`), "States.S.Parameters.a.$", "unexpected"},
		{"Format placeholders", one(`{"Type":"Pass","Parameters":{"a.$":"States.Format('{} {}', $.a)"},"End":true}`), "States.S.Parameters.a.$", "2 {} placeholders but 1"},
		{"Hash algorithm", one(`{"Type":"Pass","Parameters":{"a.$":"States.Hash('x', 'SHA-3')"},"End":true}`), "States.S.Parameters.a.$", "unknown algorithm"},
		{"JsonMerge deep", one(`{"Type":"Pass","Parameters":{"a.$":"States.JsonMerge($.a, $.b, true)"},"End":true}`), "States.S.Parameters.a.$", "shallow"},
		{"intrinsic bad arg", one(`{"Type":"Pass","Parameters":{"a.$":"States.Array(foo)"},"End":true}`), "States.S.Parameters.a.$", "bad argument"},
		{"Task without Resource", one(`{"Type":"Task","End":true}`), "States.S.Resource", "required"},
		{"TimeoutSeconds both", task(`"TimeoutSeconds":5,"TimeoutSecondsPath":"$.t",`), "States.S.TimeoutSecondsPath", "not both"},
		{"TimeoutSeconds zero", task(`"TimeoutSeconds":0,`), "States.S.TimeoutSeconds", "at least 1"},
		{"Heartbeat too long", task(`"TimeoutSeconds":5,"HeartbeatSeconds":5,`), "States.S.HeartbeatSeconds", "smaller than TimeoutSeconds"},
		{"Retry not array", task(`"Retry":{},`), "States.S.Retry", "array"},
		{"Retry no ErrorEquals", task(`"Retry":[{"MaxAttempts":1}],`), "States.S.Retry[0].ErrorEquals", "required"},
		{"Retry empty ErrorEquals", task(`"Retry":[{"ErrorEquals":[]}],`), "States.S.Retry[0].ErrorEquals", "non-empty"},
		{"Retry ALL not alone", task(`"Retry":[{"ErrorEquals":["States.ALL","X"]}],`), "States.S.Retry[0].ErrorEquals[0]", "alone"},
		{"Retry ALL not last", task(`"Retry":[{"ErrorEquals":["States.ALL"]},{"ErrorEquals":["X"]}],`), "States.S.Retry[0].ErrorEquals[0]", "last"},
		{"Retry reserved name", task(`"Retry":[{"ErrorEquals":["States.Oops"]}],`), "States.S.Retry[0].ErrorEquals[0]", "reserved"},
		{"Retry BackoffRate", task(`"Retry":[{"ErrorEquals":["X"],"BackoffRate":0.5}],`), "States.S.Retry[0].BackoffRate", "at least 1.0"},
		{"Retry IntervalSeconds", task(`"Retry":[{"ErrorEquals":["X"],"IntervalSeconds":0}],`), "States.S.Retry[0].IntervalSeconds", "at least 1"},
		{"Retry MaxAttempts", task(`"Retry":[{"ErrorEquals":["X"],"MaxAttempts":-1}],`), "States.S.Retry[0].MaxAttempts", "at least 0"},
		{"Retry MaxAttempts fraction", task(`"Retry":[{"ErrorEquals":["X"],"MaxAttempts":1.5}],`), "States.S.Retry[0].MaxAttempts", "whole number"},
		{"Retry jitter", task(`"Retry":[{"ErrorEquals":["X"],"JitterStrategy":"SOME"}],`), "States.S.Retry[0].JitterStrategy", "FULL or NONE"},
		{"Retry unknown field", task(`"Retry":[{"ErrorEquals":["X"],"Interval":3}],`), "States.S.Retry[0].Interval", "unknown field for a retrier"},
		{"Catch no Next", task(`"Catch":[{"ErrorEquals":["X"]}],`), "States.S.Catch[0].Next", "required"},
		{"Catch Next unknown", task(`"Catch":[{"ErrorEquals":["X"],"Next":"Nowhere"}],`), "States.S.Catch[0].Next", `"Nowhere"`},
		{"Catch ResultPath", task(`"Catch":[{"ErrorEquals":["X"],"Next":"S","ResultPath":"$..x"}],`), "States.S.Catch[0].ResultPath", "reference path"},
		{"Retry on Pass", one(`{"Type":"Pass","Retry":[],"End":true}`), "States.S.Retry", "unknown field"},
		{"Choice no Choices", one(`{"Type":"Choice"}`), "States.S.Choices", "non-empty"},
		{"Choice rule no Next", choice(`{"Variable":"$.a","NumericEquals":1}`), "States.C.Choices[0].Next", "required"},
		{"Choice rule Next unknown", choice(`{"Variable":"$.a","NumericEquals":1,"Next":"Maybe"}`), "States.C.Choices[0].Next", `"Maybe"`},
		{"Choice no operator", choice(`{"Variable":"$.a","Next":"Yes"}`), "States.C.Choices[0]", "needs one comparison"},
		{"Choice two operators", choice(`{"Variable":"$.a","NumericEquals":1,"StringEquals":"x","Next":"Yes"}`), "States.C.Choices[0].StringEquals", "exactly one"},
		{"Choice wrong operand", `{"StartAt":"Pick","States":{"Pick":{"Type":"Choice","Choices":[{"Variable":"$.a","IsNull":true,"Next":"Y"},{"Variable":"$.a","IsNull":false,"Next":"Y"},{"Variable":"$.a","NumericEquals":"1","Next":"Y"}]},"Y":{"Type":"Succeed"}}}`,
			"States.Pick.Choices[2].NumericEquals", "must be a number"},
		{"Choice bad timestamp", choice(`{"Variable":"$.a","TimestampEquals":"yesterday","Next":"Yes"}`), "States.C.Choices[0].TimestampEquals", "RFC 3339"},
		{"Choice bad Is*", choice(`{"Variable":"$.a","IsNull":"yes","Next":"Yes"}`), "States.C.Choices[0].IsNull", "true or false"},
		{"Choice no Variable", choice(`{"NumericEquals":1,"Next":"Yes"}`), "States.C.Choices[0].Variable", "required"},
		{"Choice bad Variable", choice(`{"Variable":"a","NumericEquals":1,"Next":"Yes"}`), "States.C.Choices[0].Variable", "must start with $"},
		{"Choice bad path operand", choice(`{"Variable":"$.a","NumericEqualsPath":"x","Next":"Yes"}`), "States.C.Choices[0].NumericEqualsPath", "must start with $"},
		{"Choice StringMatchesPath", choice(`{"Variable":"$.a","StringMatchesPath":"$.b","Next":"Yes"}`), "States.C.Choices[0].StringMatchesPath", "unknown field"},
		{"Choice nested Next", choice(`{"Not":{"Variable":"$.a","IsNull":true,"Next":"Yes"},"Next":"Yes"}`), "States.C.Choices[0].Not.Next", "only top-level"},
		{"Choice empty And", choice(`{"And":[],"Next":"Yes"}`), "States.C.Choices[0].And", "non-empty"},
		{"Choice nested error", choice(`{"Or":[{"Variable":"$.a","IsNull":true},{"Variable":"$.a","BooleanEquals":1}],"Next":"Yes"}`), "States.C.Choices[0].Or[1].BooleanEquals", "true or false"},
		{"Choice Default unknown", `{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.a","IsNull":true,"Next":"C"}],"Default":"Nope"}}}`, "States.C.Default", `"Nope"`},
		{"Wait none", one(`{"Type":"Wait","End":true}`), "States.S", "exactly one of Seconds"},
		{"Wait two", one(`{"Type":"Wait","Seconds":1,"Timestamp":"2026-01-01T00:00:00Z","End":true}`), "States.S", "exactly one"},
		{"Wait negative", one(`{"Type":"Wait","Seconds":-1,"End":true}`), "States.S.Seconds", "at least 0"},
		{"Wait bad timestamp", one(`{"Type":"Wait","Timestamp":"2026-01-01 00:00","End":true}`), "States.S.Timestamp", "RFC 3339"},
		{"Wait SecondsPath wildcard", one(`{"Type":"Wait","SecondsPath":"$.a[*]","End":true}`), "States.S.SecondsPath", "reference path"},
		{"Fail Error and ErrorPath", one(`{"Type":"Fail","Error":"E","ErrorPath":"$.e"}`), "States.S.ErrorPath", "not both"},
		{"Fail CausePath intrinsic", one(`{"Type":"Fail","CausePath":"States.Format('{}')"}`), "States.S.CausePath", "placeholders"},
		{"Fail with End", one(`{"Type":"Fail","End":true}`), "States.S.End", "unknown field"},
		{"Parallel no Branches", one(`{"Type":"Parallel","End":true}`), "States.S.Branches", "required"},
		{"Parallel empty Branches", one(`{"Type":"Parallel","Branches":[],"End":true}`), "States.S.Branches", "non-empty"},
		{"Parallel branch StartAt", one(`{"Type":"Parallel","Branches":[{"States":{"A":{"Type":"Succeed"}}}],"End":true}`), "States.S.Branches[0].StartAt", "required"},
		{"Parallel branch Next out", `{"StartAt":"Fan","States":{"Fan":{"Type":"Parallel","Next":"Out","Branches":[{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"B":{"Type":"Succeed"}}},{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"Out"}}}]},"Out":{"Type":"Succeed"}}}`,
			"States.Fan.Branches[1].States.A.Next", `"Out"`},
		{"Parallel branch unreachable", one(`{"Type":"Parallel","End":true,"Branches":[{"StartAt":"A","States":{"A":{"Type":"Succeed"},"B":{"Type":"Succeed"}}}]}`), "States.S.Branches[0].States.B", "cannot be reached"},
		{"Map no processor", one(`{"Type":"Map","End":true}`), "States.S.ItemProcessor", "required"},
		{"Map both processors", one(`{"Type":"Map","Iterator":{"StartAt":"A","States":{"A":{"Type":"Succeed"}}},"ItemProcessor":{"StartAt":"A","States":{"A":{"Type":"Succeed"}}},"End":true}`), "States.S.Iterator", "not both"},
		{"Map nested error", one(`{"Type":"Map","ItemProcessor":{"StartAt":"A","States":{"A":{"Type":"Task","End":true}}},"End":true}`), "States.S.ItemProcessor.States.A.Resource", "required"},
		{"Map distributed", one(`{"Type":"Map","ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED"},"StartAt":"A","States":{"A":{"Type":"Succeed"}}},"End":true}`), "States.S.ItemProcessor.ProcessorConfig.Mode", "INLINE"},
		{"Map ItemReader", one(`{"Type":"Map","ItemReader":{},"ItemProcessor":{"StartAt":"A","States":{"A":{"Type":"Succeed"}}},"End":true}`), "States.S.ItemReader", "distributed Map"},
		{"Map ItemsPath", one(`{"Type":"Map","ItemsPath":"$..a","ItemProcessor":{"StartAt":"A","States":{"A":{"Type":"Succeed"}}},"End":true}`), "States.S.ItemsPath", "reference path"},
		{"Map MaxConcurrency", one(`{"Type":"Map","MaxConcurrency":-1,"ItemProcessor":{"StartAt":"A","States":{"A":{"Type":"Succeed"}}},"End":true}`), "States.S.MaxConcurrency", "at least 0"},
		{"Map ItemSelector and Parameters", one(`{"Type":"Map","ItemSelector":{},"Parameters":{},"ItemProcessor":{"StartAt":"A","States":{"A":{"Type":"Succeed"}}},"End":true}`), "States.S.ItemSelector", "not both"},
		{"JSONata", `{"StartAt":"A","QueryLanguage":"JSONata","States":{"A":{"Type":"Succeed"}}}`, "QueryLanguage", "JSONata"},
		{"duplicate state", `{"StartAt":"A","States":{"A":{"Type":"Succeed"},"A":{"Type":"Succeed"}}}`, "States", "duplicate"},
		{"Next empty", `{"StartAt":"A","States":{"A":{"Type":"Pass","Next":""}}}`, "States.A.Next", "must name a state"},
		{"End false without Next", one(`{"Type":"Pass","End":false}`), "States.S.Next", "required"},
		{"Result bad", one(`{"Type":"Pass","Result":{"a":},"End":true}`), "", "must be a JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.def))
			var e *v1.Error
			if !errors.As(err, &e) || e.Kind != v1.ErrInvalid {
				t.Fatalf("err %v, want a v1 Invalid error", err)
			}
			if e.Field != c.field || !strings.Contains(e.Message, c.msg) {
				t.Fatalf("got field %q message %q; want field %q message containing %q", e.Field, e.Message, c.field, c.msg)
			}
		})
	}
}

func TestParseTestdata(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	if len(files) < 3 {
		t.Fatalf("testdata has %d definitions", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(m.Resources()) == 0 {
			t.Errorf("%s: no resources found", f)
		}
	}
}

func TestResources(t *testing.T) {
	b, _ := os.ReadFile("testdata/order.json")
	m := mustParse(t, string(b))
	var got []string
	for _, r := range m.Resources() {
		got = append(got, r.Field+"="+r.Resource)
	}
	want := "States.Validate.Resource=function:validate States.Reserve.ItemProcessor.States.ReserveItem.Resource=function:reserve " +
		"States.Charge.Resource=function:charge States.Finish.Branches[0].States.Email.Resource=service:mailer/send " +
		"States.Finish.Branches[1].States.Ledger.Resource=service:ledger/record"
	if strings.Join(got, " ") != want {
		t.Fatalf("resources\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Add([]byte(one(`{"Type":"Pass","Parameters":{"a.$":"States.Format('{}', States.Array($.x[0], $$.Map))"},"End":true}`)))
	f.Add([]byte(choice(`{"Not":{"Or":[{"Variable":"$['a'][1:]","StringMatches":"a\\*"}]},"Next":"Yes"}`)))
	f.Add([]byte(`{"StartAt":"M","States":{"M":{"Type":"Map","ItemProcessor":{"StartAt":"A","States":{"A":{"Type":"Wait","SecondsPath":"$.s","End":true}}},"End":true}}}`))
	f.Fuzz(func(t *testing.T, def []byte) {
		m, err := Parse(def)
		if err != nil {
			var e *v1.Error
			if !errors.As(err, &e) || e.Kind != v1.ErrInvalid {
				t.Fatalf("error %v is not a v1 Invalid error", err)
			}
			return
		}
		if _, ok := m.States[m.StartAt]; !ok {
			t.Fatalf("parsed a machine whose StartAt %q is not a state", m.StartAt)
		}
	})
}
