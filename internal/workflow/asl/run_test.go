package asl

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
)

// one wraps a single state S into a machine.
func one(state string) string { return `{"StartAt":"S","States":{"S":` + state + `}}` }

type runCase struct {
	name  string
	def   string
	input string
	tasks map[string]func(TaskCall) (json.RawMessage, error)
	want  string // expected output JSON, or
	err   string // expected error name
	cause string // expected cause, when set
}

func runCases(t *testing.T, cases []runCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, tc.def)
			rt := newMem(t)
			for k, f := range tc.tasks {
				rt.tasks[k] = f
			}
			in := tc.input
			if in == "" {
				in = "{}"
			}
			out, err := m.Run(context.Background(), json.RawMessage(in), cobj(), rt)
			if tc.err != "" {
				var se *Error
				if !errors.As(err, &se) || se.Name != tc.err {
					t.Fatalf("got output %s, error %v; want error %s", out, err, tc.err)
				}
				if tc.cause != "" && se.Cause != tc.cause {
					t.Fatalf("cause %q, want %q", se.Cause, tc.cause)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got, want := canon(t, string(out)), canon(t, tc.want); got != want {
				t.Fatalf("output\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestPassAndPaths(t *testing.T) {
	runCases(t, []runCase{
		{name: "pass through", def: one(`{"Type":"Pass","End":true}`), input: `{"a":1}`, want: `{"a":1}`},
		{name: "Result replaces", def: one(`{"Type":"Pass","Result":{"x":[1,2]},"End":true}`), input: `{"a":1}`, want: `{"x":[1,2]}`},
		// The specification's ResultPath example: the result goes under $.master.detail.
		{name: "ResultPath nested create", def: one(`{"Type":"Pass","Result":{"x-datum":0.381018,"y-datum":622.2269926397355},"ResultPath":"$.coords","End":true}`),
			input: `{"foo":123,"bar":["a","b","c"]}`, want: `{"foo":123,"bar":["a","b","c"],"coords":{"x-datum":0.381018,"y-datum":622.2269926397355}}`},
		{name: "ResultPath deep", def: one(`{"Type":"Pass","Result":"r","ResultPath":"$.master.detail","End":true}`), input: `{"master":{"keep":1}}`, want: `{"master":{"keep":1,"detail":"r"}}`},
		{name: "ResultPath null keeps input", def: one(`{"Type":"Pass","Result":"r","ResultPath":null,"End":true}`), input: `{"a":1}`, want: `{"a":1}`},
		{name: "ResultPath $ replaces", def: one(`{"Type":"Pass","Result":"r","ResultPath":"$","End":true}`), input: `{"a":1}`, want: `"r"`},
		{name: "ResultPath into array element", def: one(`{"Type":"Pass","Result":9,"ResultPath":"$.a[1]","End":true}`), input: `{"a":[1,2,3]}`, want: `{"a":[1,9,3]}`},
		{name: "ResultPath into a string fails", def: one(`{"Type":"Pass","Result":1,"ResultPath":"$.a.b","End":true}`), input: `{"a":"str"}`, err: ErrResultPathMatchFailure},
		{name: "InputPath", def: one(`{"Type":"Pass","InputPath":"$.a","End":true}`), input: `{"a":{"b":1}}`, want: `{"b":1}`},
		{name: "InputPath null", def: one(`{"Type":"Pass","InputPath":null,"End":true}`), input: `{"a":1}`, want: `{}`},
		{name: "InputPath missing is States.Runtime", def: one(`{"Type":"Pass","InputPath":"$.nope","End":true}`), input: `{"a":1}`, err: ErrRuntime},
		{name: "OutputPath", def: one(`{"Type":"Pass","OutputPath":"$.a.b","End":true}`), input: `{"a":{"b":[1]}}`, want: `[1]`},
		{name: "OutputPath null", def: one(`{"Type":"Pass","OutputPath":null,"End":true}`), input: `{"a":1}`, want: `{}`},
		// ResultPath merges into the raw input, not the InputPath-filtered one.
		{name: "InputPath then ResultPath uses raw input", def: one(`{"Type":"Pass","InputPath":"$.a","ResultPath":"$.copy","End":true}`), input: `{"a":{"b":1},"c":2}`, want: `{"a":{"b":1},"c":2,"copy":{"b":1}}`},
		{name: "bracket and index paths", def: one(`{"Type":"Pass","Parameters":{"x.$":"$['odd key'][1]","y.$":"$.list[-1]","z.$":"$.list[*]"},"End":true}`),
			input: `{"odd key":[10,20],"list":[1,2,3]}`, want: `{"x":20,"y":3,"z":[1,2,3]}`},
		{name: "wildcard and slice paths", def: one(`{"Type":"Pass","Parameters":{"names.$":"$.people[*].name","first2.$":"$.people[0:2].age","all.$":"$..age"},"End":true}`),
			input: `{"people":[{"name":"a","age":1},{"name":"b","age":2},{"name":"c","age":3}]}`, want: `{"names":["a","b","c"],"first2":[1,2],"all":[1,2,3]}`},
		{name: "Parameters static and nested", def: one(`{"Type":"Pass","Parameters":{"flag":true,"nested":{"v.$":"$.a","lit":[1,{"w.$":"$.a"}]}},"End":true}`),
			input: `{"a":"A"}`, want: `{"flag":true,"nested":{"v":"A","lit":[1,{"w":"A"}]}}`},
		{name: "Parameters missing path", def: one(`{"Type":"Pass","Parameters":{"v.$":"$.nope"},"End":true}`), err: ErrParameterPathFailure},
		{name: "context object", def: one(`{"Type":"Pass","Parameters":{"id.$":"$$.Execution.Id","name.$":"$$.Execution.Name","sm.$":"$$.StateMachine.Name","state.$":"$$.State.Name","entered.$":"$$.State.EnteredTime","start.$":"$$.Execution.StartTime","in.$":"$$.Execution.Input.a","retry.$":"$$.State.RetryCount"},"End":true}`),
			input: `{"a":5}`, want: `{"id":"exec-1","name":"first","sm":"orders","state":"S","entered":"2026-03-14T01:59:26.000Z","start":"2026-03-14T01:59:26.000Z","in":5,"retry":0}`},
		{name: "two states", def: `{"StartAt":"A","States":{"A":{"Type":"Pass","Result":1,"ResultPath":"$.a","Next":"B"},"B":{"Type":"Pass","Result":2,"ResultPath":"$.b","End":true}}}`, want: `{"a":1,"b":2}`},
		{name: "succeed with paths", def: one(`{"Type":"Succeed","InputPath":"$.a","OutputPath":"$.b"}`), input: `{"a":{"b":3}}`, want: `3`},
		{name: "big numbers survive", def: one(`{"Type":"Pass","End":true}`), input: `{"n":12345678901234567890,"f":1.50}`, want: `{"n":12345678901234567890,"f":1.50}`},
	})
}

func TestFail(t *testing.T) {
	runCases(t, []runCase{
		{name: "Error and Cause", def: one(`{"Type":"Fail","Error":"OrderRejected","Cause":"out of stock"}`), err: "OrderRejected", cause: "out of stock"},
		{name: "ErrorPath and CausePath", def: one(`{"Type":"Fail","ErrorPath":"$.e","CausePath":"$.c"}`), input: `{"e":"Bad","c":"why"}`, err: "Bad", cause: "why"},
		{name: "CausePath intrinsic", def: one(`{"Type":"Fail","Error":"E","CausePath":"States.Format('order {} failed', $.id)"}`), input: `{"id":7}`, err: "E", cause: "order 7 failed"},
		{name: "ErrorPath not a string", def: one(`{"Type":"Fail","ErrorPath":"$.e"}`), input: `{"e":1}`, err: ErrRuntime},
	})
}

func choice(rule string) string {
	return `{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[` + rule + `],"Default":"No"},
	"Yes":{"Type":"Pass","Result":"yes","End":true},"No":{"Type":"Pass","Result":"no","End":true}}}`
}

func TestChoice(t *testing.T) {
	in := `{"s":"hello","n":10,"b":true,"t":"2026-03-14T01:59:26Z","t2":"2026-03-15T00:00:00Z","nul":null,"n2":10.0,"s2":"help","star":"a*b","arr":[1]}`
	yes, no := `"yes"`, `"no"`
	cases := []struct {
		rule string
		want string
	}{
		{`{"Variable":"$.s","StringEquals":"hello","Next":"Yes"}`, yes},
		{`{"Variable":"$.s","StringEquals":"Hello","Next":"Yes"}`, no},
		{`{"Variable":"$.s","StringLessThan":"help","Next":"Yes"}`, yes},
		{`{"Variable":"$.s","StringGreaterThan":"help","Next":"Yes"}`, no},
		{`{"Variable":"$.s","StringLessThanEquals":"hello","Next":"Yes"}`, yes},
		{`{"Variable":"$.s","StringGreaterThanEquals":"hello","Next":"Yes"}`, yes},
		{`{"Variable":"$.s","StringEqualsPath":"$.s2","Next":"Yes"}`, no},
		{`{"Variable":"$.s","StringLessThanPath":"$.s2","Next":"Yes"}`, yes},
		{`{"Variable":"$.s","StringGreaterThanPath":"$.s2","Next":"Yes"}`, no},
		{`{"Variable":"$.s","StringLessThanEqualsPath":"$.s","Next":"Yes"}`, yes},
		{`{"Variable":"$.s","StringGreaterThanEqualsPath":"$.s2","Next":"Yes"}`, no},
		{`{"Variable":"$.s","StringMatches":"he*o","Next":"Yes"}`, yes},
		{`{"Variable":"$.s","StringMatches":"*ll*","Next":"Yes"}`, yes},
		{`{"Variable":"$.s","StringMatches":"he*x","Next":"Yes"}`, no},
		{`{"Variable":"$.star","StringMatches":"a\\*b","Next":"Yes"}`, yes},
		{`{"Variable":"$.s","StringMatches":"h\\*llo","Next":"Yes"}`, no},
		{`{"Variable":"$.n","StringEquals":"10","Next":"Yes"}`, no}, // wrong type is false, not an error
		{`{"Variable":"$.n","NumericEquals":10,"Next":"Yes"}`, yes},
		{`{"Variable":"$.n2","NumericEquals":10,"Next":"Yes"}`, yes},
		{`{"Variable":"$.n","NumericLessThan":10,"Next":"Yes"}`, no},
		{`{"Variable":"$.n","NumericGreaterThan":9.5,"Next":"Yes"}`, yes},
		{`{"Variable":"$.n","NumericLessThanEquals":10,"Next":"Yes"}`, yes},
		{`{"Variable":"$.n","NumericGreaterThanEquals":11,"Next":"Yes"}`, no},
		{`{"Variable":"$.n","NumericEqualsPath":"$.n2","Next":"Yes"}`, yes},
		{`{"Variable":"$.n","NumericLessThanPath":"$.n2","Next":"Yes"}`, no},
		{`{"Variable":"$.n","NumericGreaterThanPath":"$.n2","Next":"Yes"}`, no},
		{`{"Variable":"$.n","NumericLessThanEqualsPath":"$.n2","Next":"Yes"}`, yes},
		{`{"Variable":"$.n","NumericGreaterThanEqualsPath":"$.n2","Next":"Yes"}`, yes},
		{`{"Variable":"$.b","BooleanEquals":true,"Next":"Yes"}`, yes},
		{`{"Variable":"$.b","BooleanEqualsPath":"$.b","Next":"Yes"}`, yes},
		{`{"Variable":"$.t","TimestampEquals":"2026-03-14T01:59:26Z","Next":"Yes"}`, yes},
		{`{"Variable":"$.t","TimestampEquals":"2026-03-14T02:59:26+01:00","Next":"Yes"}`, yes},
		{`{"Variable":"$.t","TimestampLessThan":"2026-03-14T01:59:27Z","Next":"Yes"}`, yes},
		{`{"Variable":"$.t","TimestampGreaterThan":"2026-03-14T01:59:27Z","Next":"Yes"}`, no},
		{`{"Variable":"$.t","TimestampLessThanEquals":"2026-03-14T01:59:26Z","Next":"Yes"}`, yes},
		{`{"Variable":"$.t","TimestampGreaterThanEquals":"2026-03-14T01:59:26Z","Next":"Yes"}`, yes},
		{`{"Variable":"$.t","TimestampEqualsPath":"$.t2","Next":"Yes"}`, no},
		{`{"Variable":"$.t","TimestampLessThanPath":"$.t2","Next":"Yes"}`, yes},
		{`{"Variable":"$.t","TimestampGreaterThanPath":"$.t2","Next":"Yes"}`, no},
		{`{"Variable":"$.t","TimestampLessThanEqualsPath":"$.t2","Next":"Yes"}`, yes},
		{`{"Variable":"$.t","TimestampGreaterThanEqualsPath":"$.t2","Next":"Yes"}`, no},
		{`{"Variable":"$.s","TimestampEquals":"2026-03-14T01:59:26Z","Next":"Yes"}`, no},
		{`{"Variable":"$.nul","IsNull":true,"Next":"Yes"}`, yes},
		{`{"Variable":"$.s","IsNull":true,"Next":"Yes"}`, no},
		{`{"Variable":"$.missing","IsPresent":false,"Next":"Yes"}`, yes},
		{`{"Variable":"$.s","IsPresent":true,"Next":"Yes"}`, yes},
		{`{"Variable":"$.n","IsNumeric":true,"Next":"Yes"}`, yes},
		{`{"Variable":"$.s","IsNumeric":false,"Next":"Yes"}`, yes},
		{`{"Variable":"$.s","IsString":true,"Next":"Yes"}`, yes},
		{`{"Variable":"$.b","IsBoolean":true,"Next":"Yes"}`, yes},
		{`{"Variable":"$.t","IsTimestamp":true,"Next":"Yes"}`, yes},
		{`{"Variable":"$.s","IsTimestamp":true,"Next":"Yes"}`, no},
		{`{"And":[{"Variable":"$.n","NumericGreaterThan":1},{"Variable":"$.s","StringEquals":"hello"}],"Next":"Yes"}`, yes},
		{`{"And":[{"Variable":"$.n","NumericGreaterThan":1},{"Variable":"$.s","StringEquals":"x"}],"Next":"Yes"}`, no},
		{`{"Or":[{"Variable":"$.n","NumericGreaterThan":100},{"Variable":"$.s","StringEquals":"hello"}],"Next":"Yes"}`, yes},
		{`{"Not":{"Variable":"$.s","StringEquals":"hello"},"Next":"Yes"}`, no},
		{`{"And":[{"Variable":"$.missing","IsPresent":true},{"Variable":"$.missing","NumericEquals":1}],"Next":"Yes"}`, no},
		{`{"Variable":"$.arr[0]","NumericEquals":1,"Next":"Yes"}`, yes},
	}
	var rc []runCase
	for _, c := range cases {
		rc = append(rc, runCase{name: c.rule, def: choice(c.rule), input: in, want: c.want})
	}
	noDefault := `{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.n","NumericEquals":1,"Next":"Y"}]},"Y":{"Type":"Succeed"}}}`
	rc = append(rc,
		runCase{name: "no match without Default", def: noDefault, input: in, err: ErrNoChoiceMatched},
		runCase{name: "missing Variable is States.Runtime", def: choice(`{"Variable":"$.missing","NumericEquals":1,"Next":"Yes"}`), input: in, err: ErrRuntime},
		runCase{name: "first matching rule wins", def: `{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[
			{"Variable":"$.n","NumericGreaterThan":1,"Next":"A"},{"Variable":"$.n","NumericGreaterThan":0,"Next":"B"}]},
			"A":{"Type":"Pass","Result":"A","End":true},"B":{"Type":"Pass","Result":"B","End":true}}}`, input: in, want: `"A"`},
		runCase{name: "Choice InputPath and OutputPath", def: `{"StartAt":"C","States":{"C":{"Type":"Choice","InputPath":"$.x","OutputPath":"$.y","Choices":[
			{"Variable":"$.v","NumericEquals":1,"Next":"E"}]},"E":{"Type":"Succeed"}}}`, input: `{"x":{"v":1,"y":"out"}}`, want: `"out"`},
	)
	runCases(t, rc)
}

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"*.log", "a.log", true}, {"*.log", "a.txt", false}, {"log-*.txt", "log-2026.txt", true},
		{"a\\*", "a*", true}, {"a\\*", "ab", false}, {"a\\\\b", `a\b`, true}, {"*", "", true},
		{"a*b*c", "aXbYc", true}, {"a*b*c", "aXbY", false}, {"", "", true}, {"", "x", false},
	} {
		if got := globMatch(c.p, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

func TestIntrinsics(t *testing.T) {
	p := func(expr string) string {
		return one(`{"Type":"Pass","Parameters":{"r.$":` + jsonString(expr) + `},"OutputPath":"$.r","End":true}`)
	}
	runCases(t, []runCase{
		{name: "Format", def: p(`States.Format('Hello, my name is {}.', $.name)`), input: `{"name":"Arnav"}`, want: `"Hello, my name is Arnav."`},
		{name: "Format types", def: p(`States.Format('{} {} {} {}', $.n, $.b, $.z, 'x')`), input: `{"n":1.5,"b":true,"z":null}`, want: `"1.5 true null x"`},
		{name: "Format escapes", def: p(`States.Format('\{\} {} it\'s \\ ok', 'v')`), want: `"{} v it's \\ ok"`},
		{name: "Format object fails", def: p(`States.Format('{}', $.o)`), input: `{"o":{}}`, err: ErrIntrinsicFailure},
		{name: "StringToJson", def: p(`States.StringToJson($.s)`), input: `{"s":"{\"number\": 20}"}`, want: `{"number":20}`},
		{name: "StringToJson bad", def: p(`States.StringToJson($.s)`), input: `{"s":"{nope"}`, err: ErrIntrinsicFailure},
		{name: "JsonToString", def: p(`States.JsonToString($.d)`), input: `{"d":{"id":1,"name":"x"}}`, want: `"{\"id\":1,\"name\":\"x\"}"`},
		{name: "Array", def: p(`States.Array('Foo', 2020, $.a, null, true)`), input: `{"a":{"b":1}}`, want: `["Foo",2020,{"b":1},null,true]`},
		{name: "ArrayPartition", def: p(`States.ArrayPartition($.a, 4)`), input: `{"a":[1,2,3,4,5,6,7,8,9]}`, want: `[[1,2,3,4],[5,6,7,8],[9]]`},
		{name: "ArrayPartition zero", def: p(`States.ArrayPartition($.a, 0)`), input: `{"a":[1]}`, err: ErrIntrinsicFailure},
		{name: "ArrayContains", def: p(`States.ArrayContains($.a, $.v)`), input: `{"a":[1,2,3,4,5,6,7,8,9],"v":5}`, want: `true`},
		{name: "ArrayContains object", def: p(`States.ArrayContains($.a, $.v)`), input: `{"a":[{"x":1,"y":2}],"v":{"y":2,"x":1}}`, want: `true`},
		{name: "ArrayRange", def: p(`States.ArrayRange(1, 9, 2)`), want: `[1,3,5,7,9]`},
		{name: "ArrayRange down", def: p(`States.ArrayRange(5, 1, -2)`), want: `[5,3,1]`},
		{name: "ArrayRange too long", def: p(`States.ArrayRange(1, 2000, 1)`), err: ErrIntrinsicFailure},
		{name: "ArrayGetItem", def: p(`States.ArrayGetItem($.a, $.i)`), input: `{"a":[1,2,3,4,5,6,7,8,9],"i":5}`, want: `6`},
		{name: "ArrayGetItem out of range", def: p(`States.ArrayGetItem($.a, 9)`), input: `{"a":[1]}`, err: ErrIntrinsicFailure},
		{name: "ArrayLength", def: p(`States.ArrayLength($.a)`), input: `{"a":[1,2,3,4,5,6,7,8,9]}`, want: `9`},
		{name: "ArrayLength of non-array", def: p(`States.ArrayLength($.a)`), input: `{"a":"x"}`, err: ErrIntrinsicFailure},
		{name: "ArrayUnique", def: p(`States.ArrayUnique($.a)`), input: `{"a":[1,2,3,3,3,3,3,3,4]}`, want: `[1,2,3,4]`},
		{name: "Base64Encode", def: p(`States.Base64Encode($.s)`), input: `{"s":"Data to encode"}`, want: `"RGF0YSB0byBlbmNvZGU="`},
		{name: "Base64Decode", def: p(`States.Base64Decode($.s)`), input: `{"s":"RGF0YSB0byBlbmNvZGU="}`, want: `"Data to encode"`},
		{name: "Base64Decode bad", def: p(`States.Base64Decode('***')`), err: ErrIntrinsicFailure},
		{name: "Hash SHA-1", def: p(`States.Hash($.Data, $.Algorithm)`), input: `{"Data":"input data","Algorithm":"SHA-1"}`, want: `"aaff4a450a104cd177d28d18d74485e8cae074b7"`},
		{name: "Hash MD5", def: p(`States.Hash('abc', 'MD5')`), want: `"900150983cd24fb0d6963f7d28e17f72"`},
		{name: "Hash SHA-256", def: p(`States.Hash('abc', 'SHA-256')`), want: `"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"`},
		{name: "Hash SHA-384", def: p(`States.Hash('abc', 'SHA-384')`), want: `"cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"`},
		{name: "Hash SHA-512", def: p(`States.Hash('abc', 'SHA-512')`), want: `"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"`},
		{name: "Hash unknown algorithm at run time", def: p(`States.Hash('abc', $.alg)`), input: `{"alg":"SHA-3"}`, err: ErrIntrinsicFailure},
		{name: "JsonMerge", def: p(`States.JsonMerge($.json1, $.json2, false)`),
			input: `{"json1":{"a":{"a1":1,"a2":2},"b":2},"json2":{"a":{"a3":1,"a4":2},"c":3}}`, want: `{"a":{"a3":1,"a4":2},"b":2,"c":3}`},
		{name: "MathRandom", def: p(`States.MathRandom($.start, $.end)`), input: `{"start":1,"end":999}`, want: `500`},
		{name: "MathRandom seed", def: p(`States.MathRandom(1, 11, 1234)`), want: `6`},
		{name: "MathAdd", def: p(`States.MathAdd($.value1, $.step)`), input: `{"value1":111,"step":-1}`, want: `110`},
		{name: "MathAdd non-integer", def: p(`States.MathAdd(1.5, 1)`), err: ErrIntrinsicFailure},
		{name: "StringSplit", def: p(`States.StringSplit($.inputString, $.splitter)`), input: `{"inputString":"1,2,3,4,5","splitter":","}`, want: `["1","2","3","4","5"]`},
		{name: "StringSplit many delimiters", def: p(`States.StringSplit($.inputString, $.splitter)`), input: `{"inputString":"This.is+a,test=string","splitter":".+,="}`, want: `["This","is","a","test","string"]`},
		{name: "UUID", def: p(`States.UUID()`), want: `"00000000-0000-4000-8000-000000000000"`},
		{name: "nested calls", def: p(`States.ArrayLength(States.StringSplit(States.Format('{},{}', $.a, 'b'), ','))`), input: `{"a":"x"}`, want: `2`},
		{name: "context path argument", def: p(`States.Format('{}/{}', $$.Execution.Id, $$.State.Name)`), want: `"exec-1/S"`},
		{name: "intrinsic in array template", def: one(`{"Type":"Pass","Parameters":{"list":[{"h.$":"States.Hash('abc','MD5')"}]},"End":true}`), want: `{"list":[{"h":"900150983cd24fb0d6963f7d28e17f72"}]}`},
	})
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
