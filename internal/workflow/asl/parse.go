package asl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	v1 "berth.dev/berth/api/v1"
)

// Parse reads a definition (JSON; the caller converts YAML to JSON) and
// validates it completely. Errors are *v1.Error of kind Invalid whose Field is
// a path such as "States.ChargeCard.Next" or
// "States.Pick.Choices[2].NumericEquals"; in nested machines the path goes
// through the enclosing state, e.g. "States.Fan.Branches[1].States.A.Next".
func Parse(def []byte) (*Machine, error) {
	p := &parser{}
	keys, fields, err := object(def)
	if err != nil {
		return nil, v1.Invalid("the definition must be a JSON object: %v", err)
	}
	m := p.machine("", keys, fields, true)
	if p.err != nil {
		return nil, p.err
	}
	return m, nil
}

type parser struct {
	err *v1.Error
}

func (p *parser) fail(field, format string, args ...any) {
	if p.err == nil {
		p.err = v1.FieldError(field, format, args...)
	}
}

// object decodes a JSON object keeping its key order, so that validation
// reports the first problem in the order the user wrote the definition.
func object(b []byte) ([]string, map[string]json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	tok, err := d.Token()
	if err != nil {
		return nil, nil, err
	}
	if tok != json.Delim('{') {
		return nil, nil, fmt.Errorf("expected an object")
	}
	var keys []string
	m := map[string]json.RawMessage{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, nil, err
		}
		k := tok.(string)
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return nil, nil, err
		}
		if _, dup := m[k]; dup {
			return nil, nil, fmt.Errorf("duplicate key %q", k)
		}
		keys = append(keys, k)
		m[k] = raw
	}
	if _, err := d.Token(); err != nil {
		return nil, nil, err
	}
	if _, err := d.Token(); err == nil {
		return nil, nil, fmt.Errorf("unexpected data after the object")
	}
	return keys, m, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// fieldset reads the fields of one JSON object and remembers which it used,
// so that any other field can be reported as unknown.
type fieldset struct {
	p    *parser
	path string // field path of the object, e.g. "States.A"
	keys []string
	m    map[string]json.RawMessage
}

func (p *parser) fields(path string, raw json.RawMessage) *fieldset {
	keys, m, err := object(raw)
	if err != nil {
		p.fail(path, "must be a JSON object")
		return &fieldset{p: p, path: path, m: map[string]json.RawMessage{}}
	}
	return &fieldset{p: p, path: path, keys: keys, m: m}
}

func (f *fieldset) at(name string) string {
	if f.path == "" {
		return name
	}
	return f.path + "." + name
}

func (f *fieldset) has(name string) bool { _, ok := f.m[name]; return ok }

func (f *fieldset) only(what string, allowed ...string) {
	for _, k := range f.keys {
		if !slices.Contains(allowed, k) {
			switch k {
			case "ItemReader", "ItemBatcher", "ResultWriter", "ToleratedFailureCount", "ToleratedFailurePercentage",
				"ToleratedFailureCountPath", "ToleratedFailurePercentagePath", "Label":
				f.p.fail(f.at(k), "is a distributed Map feature, which Berth does not support")
			case "QueryLanguage", "Arguments", "Output", "Assign":
				f.p.fail(f.at(k), "JSONata and variables are not supported; use the JSONPath fields")
			default:
				f.p.fail(f.at(k), "unknown field for %s", what)
			}
		}
	}
}

func (f *fieldset) str(name string, required bool) string {
	raw, ok := f.m[name]
	if !ok {
		if required {
			f.p.fail(f.at(name), "is required")
		}
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || isNull(raw) {
		f.p.fail(f.at(name), "must be a string")
	}
	return s
}

// integer reads a whole number at least lo.
func (f *fieldset) integer(name string, lo int) (int, bool) {
	raw, ok := f.m[name]
	if !ok {
		return 0, false
	}
	var x float64
	if err := json.Unmarshal(raw, &x); err != nil || isNull(raw) || x != math.Trunc(x) || x > 99999999 {
		f.p.fail(f.at(name), "must be a whole number")
		return 0, true
	}
	if int(x) < lo {
		f.p.fail(f.at(name), "must be at least %d", lo)
	}
	return int(x), true
}

func (f *fieldset) boolean(name string) bool {
	raw, ok := f.m[name]
	if !ok {
		return false
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil || isNull(raw) {
		f.p.fail(f.at(name), "must be true or false")
	}
	return b
}

// path reads a Path (reference=false) or a Reference Path (true).
func (f *fieldset) pathField(name string, reference, context bool) *jpath {
	s := f.str(name, false)
	if !f.has(name) || f.p.err != nil {
		return nil
	}
	return f.p.compilePath(f.at(name), s, reference, context)
}

func (p *parser) compilePath(field, s string, reference, context bool) *jpath {
	jp, err := parsePath(s)
	if err != nil {
		p.fail(field, "%v", err)
		return nil
	}
	if reference && !jp.definite {
		p.fail(field, "%q must be a reference path: a single node, without wildcards, slices, unions or ..", s)
		return nil
	}
	if jp.context && !context {
		p.fail(field, "%q cannot refer to the context object ($$)", s)
		return nil
	}
	return jp
}

func (f *fieldset) optPath(name string, reference bool) optPath {
	if raw, ok := f.m[name]; ok && isNull(raw) {
		return optPath{null: true}
	}
	jp := f.pathField(name, reference, !reference)
	if jp != nil && len(jp.segs) == 0 && !jp.context {
		jp = nil // "$" is the identity
	}
	return optPath{p: jp}
}

func (p *parser) machine(path string, keys []string, fields map[string]json.RawMessage, top bool) *Machine {
	f := &fieldset{p: p, path: path, keys: keys, m: fields}
	if top {
		f.only("a state machine", "Comment", "StartAt", "States", "TimeoutSeconds", "Version")
	} else {
		f.only("a nested state machine", "Comment", "StartAt", "States", "ProcessorConfig")
		if f.has("ProcessorConfig") {
			pc := p.fields(f.at("ProcessorConfig"), f.m["ProcessorConfig"])
			pc.only("ProcessorConfig", "Mode", "ExecutionType")
			if mode := pc.str("Mode", false); mode != "" && mode != "INLINE" {
				p.fail(pc.at("Mode"), "only INLINE is supported (distributed Map is not)")
			}
		}
	}
	m := &Machine{
		Comment: f.str("Comment", false),
		StartAt: f.str("StartAt", true),
		Version: f.str("Version", false),
		States:  map[string]*State{},
	}
	if top {
		m.TimeoutSeconds, _ = f.integer("TimeoutSeconds", 1)
	}
	if !f.has("States") {
		p.fail(f.at("States"), "is required")
		return m
	}
	statesAt := f.at("States")
	names, raws, err := object(f.m["States"])
	if err != nil {
		p.fail(statesAt, "must be an object of states: %v", err)
		return m
	}
	if len(names) == 0 {
		p.fail(statesAt, "must hold at least one state")
	}
	for _, name := range names {
		field := statesAt + "." + name
		if name == "" || utf8.RuneCountInString(name) > 80 {
			p.fail(field, "state names must be 1 to 80 characters long")
		}
		m.States[name] = p.state(field, name, raws[name])
		m.Order = append(m.Order, name)
	}
	if p.err != nil {
		return m
	}
	if _, ok := m.States[m.StartAt]; !ok {
		p.fail(f.at("StartAt"), "names %q, which is not a state of this machine", m.StartAt)
		return m
	}
	p.checkTransitions(m)
	return m
}

// checkTransitions checks that every target exists and that every state can
// be reached from StartAt.
func (p *parser) checkTransitions(m *Machine) {
	target := func(field, name string) {
		if _, ok := m.States[name]; !ok {
			p.fail(field, "names %q, which is not a state of this machine", name)
		}
	}
	for _, name := range m.Order {
		s := m.States[name]
		if s.Next != "" {
			target(s.field+".Next", s.Next)
		}
		if s.Default != "" {
			target(s.field+".Default", s.Default)
		}
		for i, r := range s.choices {
			target(fmt.Sprintf("%s.Choices[%d].Next", s.field, i), r.next)
		}
		for i, c := range s.catch {
			target(fmt.Sprintf("%s.Catch[%d].Next", s.field, i), c.next)
		}
	}
	if p.err != nil {
		return
	}
	seen := map[string]bool{m.StartAt: true}
	queue := []string{m.StartAt}
	for len(queue) > 0 {
		s := m.States[queue[0]]
		queue = queue[1:]
		var next []string
		if s.Next != "" {
			next = append(next, s.Next)
		}
		if s.Default != "" {
			next = append(next, s.Default)
		}
		for _, r := range s.choices {
			next = append(next, r.next)
		}
		for _, c := range s.catch {
			next = append(next, c.next)
		}
		for _, n := range next {
			if !seen[n] {
				seen[n] = true
				queue = append(queue, n)
			}
		}
	}
	for _, name := range m.Order {
		if !seen[name] {
			p.fail(m.States[name].field, "state %q cannot be reached from StartAt %q", name, m.StartAt)
		}
	}
}

var common = []string{"Type", "Comment"}

var stateFields = map[string][]string{
	"Pass":     {"Next", "End", "InputPath", "OutputPath", "ResultPath", "Parameters", "Result"},
	"Task":     {"Next", "End", "InputPath", "OutputPath", "ResultPath", "Parameters", "ResultSelector", "Resource", "Retry", "Catch", "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath", "Credentials"},
	"Choice":   {"InputPath", "OutputPath", "Choices", "Default"},
	"Wait":     {"Next", "End", "InputPath", "OutputPath", "Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
	"Succeed":  {"InputPath", "OutputPath"},
	"Fail":     {"Error", "ErrorPath", "Cause", "CausePath"},
	"Parallel": {"Next", "End", "InputPath", "OutputPath", "ResultPath", "Parameters", "ResultSelector", "Branches", "Retry", "Catch"},
	"Map":      {"Next", "End", "InputPath", "OutputPath", "ResultPath", "Parameters", "ResultSelector", "ItemsPath", "ItemSelector", "ItemProcessor", "Iterator", "MaxConcurrency", "MaxConcurrencyPath", "Retry", "Catch"},
}

// state reads one state: the fields its type allows, those that several
// types share, then those of its type alone.
func (p *parser) state(field, name string, raw json.RawMessage) *State {
	f := p.fields(field, raw)
	s := &State{Name: name, field: field}
	s.Type = f.str("Type", true)
	if p.err != nil {
		return s
	}
	allowed, ok := stateFields[s.Type]
	if !ok {
		p.fail(f.at("Type"), "unknown state type %q (use Pass, Task, Choice, Wait, Succeed, Fail, Parallel or Map)", s.Type)
		return s
	}
	f.only("a "+s.Type+" state", append(allowed, common...)...)
	s.Comment = f.str("Comment", false)

	if slices.Contains(allowed, "End") {
		s.Next = f.str("Next", false)
		s.End = f.boolean("End")
		switch {
		case s.Next != "" && s.End:
			p.fail(f.at("End"), "a state has either Next or \"End\": true, not both")
		case !f.has("Next") && !s.End:
			p.fail(f.at("Next"), "is required unless the state has \"End\": true")
		case f.has("Next") && s.Next == "":
			p.fail(f.at("Next"), "must name a state")
		}
	}
	if slices.Contains(allowed, "InputPath") {
		s.inputPath = f.optPath("InputPath", false)
		s.outputPath = f.optPath("OutputPath", false)
	}
	if slices.Contains(allowed, "ResultPath") {
		s.resultPath = f.optPath("ResultPath", true)
	}
	if f.has("Parameters") {
		s.parameters = p.template(f.at("Parameters"), f.m["Parameters"])
	}
	if f.has("ResultSelector") {
		s.resultSelector = p.template(f.at("ResultSelector"), f.m["ResultSelector"])
	}
	if slices.Contains(allowed, "Retry") {
		s.retry = p.retriers(f)
		s.catch = p.catchers(f)
	}

	switch s.Type {
	case "Pass":
		p.passState(f, s)
	case "Task":
		p.taskState(f, s)
	case "Choice":
		p.choiceState(f, s)
	case "Wait":
		p.waitState(f, s)
	case "Fail":
		p.failState(f, s)
	case "Parallel":
		p.parallelState(f, s)
	case "Map":
		p.mapState(f, s)
	}
	return s
}

// The fields of each type of state beyond those state reads for all.

func (p *parser) passState(f *fieldset, s *State) {
	if raw, ok := f.m["Result"]; ok {
		v, err := decodeValue(raw)
		if err != nil {
			p.fail(f.at("Result"), "must be JSON: %v", err)
		}
		s.result, s.hasResult = v, true
	}
}

func (p *parser) taskState(f *fieldset, s *State) {
	s.Resource = f.str("Resource", true)
	if f.has("Resource") && s.Resource == "" {
		p.fail(f.at("Resource"), "must name what the task runs, e.g. function:NAME")
	}
	s.timeoutSeconds, _ = f.integer("TimeoutSeconds", 1)
	s.heartbeatSeconds, _ = f.integer("HeartbeatSeconds", 1)
	s.timeoutPath = f.pathField("TimeoutSecondsPath", true, true)
	s.heartbeatPath = f.pathField("HeartbeatSecondsPath", true, true)
	if f.has("TimeoutSeconds") && f.has("TimeoutSecondsPath") {
		p.fail(f.at("TimeoutSecondsPath"), "give TimeoutSeconds or TimeoutSecondsPath, not both")
	}
	if f.has("HeartbeatSeconds") && f.has("HeartbeatSecondsPath") {
		p.fail(f.at("HeartbeatSecondsPath"), "give HeartbeatSeconds or HeartbeatSecondsPath, not both")
	}
	if s.heartbeatSeconds > 0 && s.timeoutSeconds > 0 && s.heartbeatSeconds >= s.timeoutSeconds {
		p.fail(f.at("HeartbeatSeconds"), "must be smaller than TimeoutSeconds (%d)", s.timeoutSeconds)
	}
}

func (p *parser) waitState(f *fieldset, s *State) {
	n := 0
	for _, k := range []string{"Seconds", "SecondsPath", "Timestamp", "TimestampPath"} {
		if f.has(k) {
			n++
		}
	}
	if n != 1 {
		p.fail(s.field, "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp or TimestampPath")
	}
	s.waitSeconds, s.hasWaitSeconds = f.integer("Seconds", 0)
	s.secondsPath = f.pathField("SecondsPath", true, true)
	s.timestampPath = f.pathField("TimestampPath", true, true)
	if f.has("Timestamp") {
		ts := f.str("Timestamp", false)
		t, err := parseTimestamp(ts)
		if err != nil && p.err == nil {
			p.fail(f.at("Timestamp"), "%q is not an RFC 3339 timestamp such as 2026-03-14T01:59:00Z", ts)
		}
		s.timestamp, s.hasTimestamp = t, true
	}
}

func (p *parser) failState(f *fieldset, s *State) {
	s.errorName = f.str("Error", false)
	s.cause = f.str("Cause", false)
	s.errorExpr = p.expr(f, "ErrorPath")
	s.causeExp = p.expr(f, "CausePath")
	if f.has("Error") && f.has("ErrorPath") {
		p.fail(f.at("ErrorPath"), "give Error or ErrorPath, not both")
	}
	if f.has("Cause") && f.has("CausePath") {
		p.fail(f.at("CausePath"), "give Cause or CausePath, not both")
	}
}

func (p *parser) parallelState(f *fieldset, s *State) {
	raw, ok := f.m["Branches"]
	var branches []json.RawMessage
	if !ok {
		p.fail(f.at("Branches"), "is required")
	} else if err := json.Unmarshal(raw, &branches); err != nil || len(branches) == 0 {
		p.fail(f.at("Branches"), "must be a non-empty array of state machines")
	}
	for i, b := range branches {
		at := fmt.Sprintf("%s[%d]", f.at("Branches"), i)
		keys, m, err := object(b)
		if err != nil {
			p.fail(at, "must be a state machine object")
			continue
		}
		s.Branches = append(s.Branches, p.machine(at, keys, m, false))
	}
}

func (p *parser) mapState(f *fieldset, s *State) {
	name := "ItemProcessor"
	if f.has("Iterator") {
		name = "Iterator"
		if f.has("ItemProcessor") {
			p.fail(f.at("Iterator"), "give ItemProcessor or its older name Iterator, not both")
		}
	}
	if !f.has(name) {
		p.fail(f.at("ItemProcessor"), "is required")
	} else {
		keys, m, err := object(f.m[name])
		if err != nil {
			p.fail(f.at(name), "must be a state machine object")
		} else {
			s.ItemProcessor = p.machine(f.at(name), keys, m, false)
		}
	}
	s.itemsPath = f.pathField("ItemsPath", true, true)
	if f.has("ItemSelector") {
		if f.has("Parameters") {
			p.fail(f.at("ItemSelector"), "give ItemSelector or its older name Parameters, not both")
		}
		s.itemSelector = p.template(f.at("ItemSelector"), f.m["ItemSelector"])
	} else {
		// In a Map state, Parameters is the older name of ItemSelector.
		s.itemSelector, s.parameters = s.parameters, nil
	}
	s.maxConcurrency, _ = f.integer("MaxConcurrency", 0)
	s.maxConcurrencyPath = f.pathField("MaxConcurrencyPath", true, true)
	if f.has("MaxConcurrency") && f.has("MaxConcurrencyPath") {
		p.fail(f.at("MaxConcurrencyPath"), "give MaxConcurrency or MaxConcurrencyPath, not both")
	}
}

func (p *parser) expr(f *fieldset, name string) *expr {
	if !f.has(name) {
		return nil
	}
	s := f.str(name, false)
	if isIntrinsic(s) {
		c, err := parseIntrinsic(s)
		if err != nil {
			p.fail(f.at(name), "%v", err)
			return nil
		}
		return &expr{call: c}
	}
	return &expr{path: p.compilePath(f.at(name), s, true, true)}
}

func (p *parser) errorEquals(f *fieldset, last bool) []string {
	raw, ok := f.m["ErrorEquals"]
	var names []string
	if !ok {
		p.fail(f.at("ErrorEquals"), "is required")
		return nil
	}
	if err := json.Unmarshal(raw, &names); err != nil || len(names) == 0 {
		p.fail(f.at("ErrorEquals"), "must be a non-empty array of error names")
		return nil
	}
	for i, n := range names {
		at := fmt.Sprintf("%s[%d]", f.at("ErrorEquals"), i)
		switch {
		case n == "":
			p.fail(at, "error names must not be empty")
		case strings.HasPrefix(n, "States.") && !predefinedErrors[n]:
			p.fail(at, "%q is not a predefined error; names starting with States. are reserved", n)
		case n == ErrAll && len(names) > 1:
			p.fail(at, "States.ALL must appear alone in ErrorEquals")
		case n == ErrAll && !last:
			p.fail(at, "States.ALL must be in the last retrier or catcher")
		}
	}
	return names
}

func (p *parser) list(f *fieldset, name string) []json.RawMessage {
	raw, ok := f.m[name]
	if !ok {
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		p.fail(f.at(name), "must be an array")
	}
	return items
}

func (p *parser) retriers(f *fieldset) []retrier {
	items := p.list(f, "Retry")
	var out []retrier
	for i, raw := range items {
		rf := p.fields(fmt.Sprintf("%s[%d]", f.at("Retry"), i), raw)
		rf.only("a retrier", "ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy", "Comment")
		r := retrier{errorEquals: p.errorEquals(rf, i == len(items)-1), intervalSeconds: 1, maxAttempts: 3, backoffRate: 2}
		if v, ok := rf.integer("IntervalSeconds", 1); ok {
			r.intervalSeconds = v
		}
		if v, ok := rf.integer("MaxAttempts", 0); ok {
			r.maxAttempts = v
		}
		if raw, ok := rf.m["BackoffRate"]; ok {
			if err := json.Unmarshal(raw, &r.backoffRate); err != nil || isNull(raw) || r.backoffRate < 1 {
				p.fail(rf.at("BackoffRate"), "must be a number of at least 1.0")
			}
		}
		r.maxDelaySeconds, _ = rf.integer("MaxDelaySeconds", 1)
		switch j := rf.str("JitterStrategy", false); j {
		case "", "NONE":
		case "FULL":
			r.fullJitter = true
		default:
			p.fail(rf.at("JitterStrategy"), "must be FULL or NONE, not %q", j)
		}
		out = append(out, r)
	}
	return out
}

func (p *parser) catchers(f *fieldset) []catcher {
	items := p.list(f, "Catch")
	var out []catcher
	for i, raw := range items {
		cf := p.fields(fmt.Sprintf("%s[%d]", f.at("Catch"), i), raw)
		cf.only("a catcher", "ErrorEquals", "Next", "ResultPath", "Comment")
		c := catcher{errorEquals: p.errorEquals(cf, i == len(items)-1), next: cf.str("Next", true)}
		c.resultPath = cf.optPath("ResultPath", true)
		out = append(out, c)
	}
	return out
}

// template compiles a payload template. Fields whose name ends in ".$" take
// their value from a path or an intrinsic function, at any depth, inside
// nested objects and arrays alike.
func (p *parser) template(field string, raw json.RawMessage) *tmpl {
	v, err := decodeValue(raw)
	if err != nil {
		p.fail(field, "must be JSON: %v", err)
		return nil
	}
	if _, ok := v.(map[string]any); !ok {
		p.fail(field, "must be a JSON object")
		return nil
	}
	return p.compile(field, v)
}

func (p *parser) compile(field string, v any) *tmpl {
	switch t := v.(type) {
	case map[string]any:
		out := &tmpl{static: true}
		for _, k := range sortedKeys(t) {
			at := field + "." + k
			if key, dyn := strings.CutSuffix(k, ".$"); dyn {
				s, ok := t[k].(string)
				if !ok {
					p.fail(at, "a field ending in .$ must be a string holding a path or an intrinsic function")
					return nil
				}
				if _, clash := t[key]; clash {
					p.fail(at, "the template has both %q and %q", key, k)
					return nil
				}
				d := &tmpl{}
				if isIntrinsic(s) {
					c, err := parseIntrinsic(s)
					if err != nil {
						p.fail(at, "%v", err)
						return nil
					}
					d.call = c
				} else if d.path = p.compilePath(at, s, false, true); d.path == nil {
					return nil
				}
				out.static = false
				out.fields = append(out.fields, tfield{key: key, val: d})
				continue
			}
			c := p.compile(at, t[k])
			if c == nil {
				return nil
			}
			out.static = out.static && c.static
			out.fields = append(out.fields, tfield{key: k, val: c})
		}
		if out.static {
			return &tmpl{static: true, lit: v}
		}
		return out
	case []any:
		out := &tmpl{static: true, isArr: true}
		for i, e := range t {
			c := p.compile(fmt.Sprintf("%s[%d]", field, i), e)
			if c == nil {
				return nil
			}
			out.static = out.static && c.static
			out.elems = append(out.elems, c)
		}
		if out.static {
			return &tmpl{static: true, lit: v}
		}
		return out
	}
	return &tmpl{static: true, lit: v}
}

var comparisons = map[string]string{ // operator → operand type
	"StringEquals": "string", "StringLessThan": "string", "StringGreaterThan": "string",
	"StringLessThanEquals": "string", "StringGreaterThanEquals": "string", "StringMatches": "string",
	"NumericEquals": "number", "NumericLessThan": "number", "NumericGreaterThan": "number",
	"NumericLessThanEquals": "number", "NumericGreaterThanEquals": "number",
	"BooleanEquals":   "boolean",
	"TimestampEquals": "timestamp", "TimestampLessThan": "timestamp", "TimestampGreaterThan": "timestamp",
	"TimestampLessThanEquals": "timestamp", "TimestampGreaterThanEquals": "timestamp",
	"IsNull": "test", "IsPresent": "test", "IsNumeric": "test", "IsString": "test", "IsBoolean": "test", "IsTimestamp": "test",
}

func isOperator(k string) bool {
	if _, ok := comparisons[k]; ok {
		return true
	}
	base, ok := strings.CutSuffix(k, "Path")
	t, known := comparisons[base]
	return ok && known && t != "test" && base != "StringMatches"
}

func (p *parser) choiceState(f *fieldset, s *State) {
	items := p.list(f, "Choices")
	if !f.has("Choices") || len(items) == 0 {
		p.fail(f.at("Choices"), "a Choice state needs a non-empty Choices array")
	}
	for i, raw := range items {
		s.choices = append(s.choices, p.rule(fmt.Sprintf("%s[%d]", f.at("Choices"), i), raw, true))
	}
	s.Default = f.str("Default", false)
}

func (p *parser) rule(field string, raw json.RawMessage, top bool) *rule {
	f := p.fields(field, raw)
	r := &rule{}
	var ops []string
	for _, k := range f.keys {
		switch {
		case k == "And" || k == "Or" || k == "Not" || isOperator(k):
			ops = append(ops, k)
		case k == "Variable" || k == "Comment" || (k == "Next" && top):
		case k == "Next":
			f.p.fail(f.at(k), "only top-level choice rules have Next; nested rules inside And, Or and Not must not")
		default:
			f.p.fail(f.at(k), "unknown field for a choice rule")
		}
	}
	if top {
		r.next = f.str("Next", true)
	}
	if len(ops) == 0 {
		p.fail(field, "a choice rule needs one comparison (e.g. StringEquals, NumericLessThan, IsPresent) or And, Or, Not")
		return r
	}
	if len(ops) > 1 {
		p.fail(f.at(ops[1]), "a choice rule has exactly one comparison; it already has %s", ops[0])
		return r
	}
	op := ops[0]
	switch op {
	case "And", "Or":
		items := p.list(f, op)
		if len(items) == 0 {
			p.fail(f.at(op), "must be a non-empty array of choice rules")
		}
		for i, raw := range items {
			sub := p.rule(fmt.Sprintf("%s[%d]", f.at(op), i), raw, false)
			if op == "And" {
				r.and = append(r.and, sub)
			} else {
				r.or = append(r.or, sub)
			}
		}
		if f.has("Variable") {
			p.fail(f.at("Variable"), "And and Or rules take no Variable")
		}
		return r
	case "Not":
		r.not = p.rule(f.at("Not"), f.m["Not"], false)
		if f.has("Variable") {
			p.fail(f.at("Variable"), "Not rules take no Variable")
		}
		return r
	}
	r.op = op
	if !f.has("Variable") {
		p.fail(f.at("Variable"), "is required for %s", op)
		return r
	}
	r.variable = f.pathField("Variable", false, true)
	at := f.at(op)
	val := f.m[op]
	if base, isPath := strings.CutSuffix(op, "Path"); isPath && comparisons[op] == "" {
		r.op = base
		r.valuePath = f.pathField(op, false, true)
		return r
	}
	switch comparisons[op] {
	case "string":
		var s string
		if json.Unmarshal(val, &s) != nil || isNull(val) {
			p.fail(at, "must be a string")
		}
		r.value = s
	case "number":
		var n float64
		if json.Unmarshal(val, &n) != nil || isNull(val) {
			p.fail(at, "must be a number")
		}
		r.value = n
	case "boolean", "test":
		var b bool
		if json.Unmarshal(val, &b) != nil || isNull(val) {
			p.fail(at, "must be true or false")
		}
		r.value = b
	case "timestamp":
		var s string
		if json.Unmarshal(val, &s) != nil || isNull(val) {
			p.fail(at, "must be a timestamp string")
			return r
		}
		t, err := parseTimestamp(s)
		if err != nil {
			p.fail(at, "%q is not an RFC 3339 timestamp such as 2026-03-14T01:59:00Z", s)
		}
		r.value = t
	}
	return r
}

// parseTimestamp accepts the RFC 3339 profile the specification requires:
// an uppercase T separator and a Z or numeric offset.
func parseTimestamp(s string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, s)
}
