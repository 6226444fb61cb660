package asl

import (
	"strconv"
	"strings"
	"time"
)

// evalEnv is where a payload template or intrinsic function is evaluated:
// its input, the state visit (for $$ and the Runtime), and the key base of
// the UUIDs and random numbers it draws.
type evalEnv struct {
	v       *visit
	base    string
	n       int
	input   any
	mapItem map[string]any
}

func (e *evalEnv) lookup(p *jpath) (any, bool) {
	if p.context {
		obj := e.v.contextObject(p, e.mapItem)
		if tok := e.taskToken(p); tok != "" {
			obj["Task"] = map[string]any{"Token": tok}
		}
		return p.get(obj)
	}
	return p.get(e.input)
}

// taskToken is $$.Task.Token in the Parameters of a Task that waits for
// one, when p may reach it; "" otherwise.
func (e *evalEnv) taskToken(p *jpath) string {
	s := e.v.s
	if s.Type != "Task" || !strings.HasSuffix(s.Resource, WaitForTaskToken) || !strings.HasSuffix(e.base, "/") {
		return ""
	}
	if p.definite && (len(p.segs) == 0 || p.segs[0].name != "Task") {
		return ""
	}
	tt, ok := e.v.r.rt.(TaskTokens)
	if !ok {
		return ""
	}
	return tt.TaskToken(strings.TrimSuffix(e.base, "/"))
}

func (e *evalEnv) random() float64 {
	e.n++
	return e.v.r.rt.Random(e.base + "random" + strconv.Itoa(e.n))
}

func (e *evalEnv) uuid() string {
	e.n++
	return e.v.r.rt.UUID(e.base + "uuid" + strconv.Itoa(e.n))
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// contextObject builds $$. State.EnteredTime costs a Runtime.Now call (and a
// journal entry), so it is only filled in when the path may reach it.
func (v *visit) contextObject(p *jpath, mapItem map[string]any) map[string]any {
	c := v.r.cobj
	state := map[string]any{"Name": v.s.Name, "RetryCount": intValue(v.retryCount)}
	if !p.definite || len(p.segs) == 0 || (p.segs[0].name == "State" && (len(p.segs) == 1 || p.segs[1].name == "EnteredTime")) {
		state["EnteredTime"] = v.enteredAt().UTC().Format(timeFormat)
	}
	obj := map[string]any{
		"Execution": map[string]any{
			"Id":        c.ExecutionID,
			"Name":      c.ExecutionName,
			"Input":     v.r.execInput,
			"StartTime": c.StartTime.UTC().Format(timeFormat),
		},
		"State":        state,
		"StateMachine": map[string]any{"Id": c.StateMachineID, "Name": c.StateMachineName},
	}
	if mapItem != nil {
		obj["Map"] = map[string]any{"Item": mapItem}
	}
	return obj
}

func (t *tmpl) eval(env *evalEnv, field string) (any, error) {
	switch {
	case t.static:
		return t.lit, nil
	case t.call != nil:
		return t.call.eval(env)
	case t.path != nil:
		x, ok := env.lookup(t.path)
		if !ok {
			return nil, &Error{Name: ErrParameterPathFailure,
				Cause: "the JSONPath " + t.path.raw + " specified for the field " + field + ".$ matched nothing in the input"}
		}
		return x, nil
	case t.isArr:
		out := make([]any, len(t.elems))
		for i, e := range t.elems {
			x, err := e.eval(env, field+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	}
	out := make(map[string]any, len(t.fields))
	for _, f := range t.fields {
		x, err := f.val.eval(env, field+"."+f.key)
		if err != nil {
			return nil, err
		}
		out[f.key] = x
	}
	return out, nil
}

// choose returns the Next of the first matching choice rule, or Default.
func (v *visit) choose(eff any) (string, error) {
	for _, r := range v.s.choices {
		ok, err := v.match(r, eff)
		if err != nil {
			return "", err
		}
		if ok {
			return r.next, nil
		}
	}
	if v.s.Default != "" {
		return v.s.Default, nil
	}
	return "", &Error{Name: ErrNoChoiceMatched, Cause: "no choice rule of state " + v.s.Name + " matched and it has no Default"}
}

func (v *visit) match(r *rule, in any) (bool, error) {
	switch {
	case r.and != nil:
		for _, sub := range r.and {
			if ok, err := v.match(sub, in); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case r.or != nil:
		for _, sub := range r.or {
			if ok, err := v.match(sub, in); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case r.not != nil:
		ok, err := v.match(r.not, in)
		return !ok, err
	}
	x, present := v.lookup(r.variable, in)
	if r.op == "IsPresent" {
		return present == r.value.(bool), nil
	}
	if !present {
		return false, runtimeErr("the choice rule Variable %s of state %s matched nothing in the input", r.variable.raw, v.s.Name)
	}
	want := r.value
	if r.valuePath != nil {
		var ok bool
		if want, ok = v.lookup(r.valuePath, in); !ok {
			return false, runtimeErr("the path %s in a %sPath rule of state %s matched nothing in the input", r.valuePath.raw, r.op, v.s.Name)
		}
	}
	return compare(r.op, x, want), nil
}

// compare applies a comparison operator. A value of the wrong type never
// matches: the specification makes that a false, not an error.
func compare(op string, x, want any) bool {
	switch op {
	case "IsNull":
		return (x == nil) == want.(bool)
	case "IsNumeric":
		return isNumber(x) == want.(bool)
	case "IsString":
		_, ok := x.(string)
		return ok == want.(bool)
	case "IsBoolean":
		_, ok := x.(bool)
		return ok == want.(bool)
	case "IsTimestamp":
		s, ok := x.(string)
		if ok {
			_, err := parseTimestamp(s)
			ok = err == nil
		}
		return ok == want.(bool)
	case "BooleanEquals":
		a, ok1 := x.(bool)
		b, ok2 := want.(bool)
		return ok1 && ok2 && a == b
	case "StringMatches":
		a, ok1 := x.(string)
		b, ok2 := want.(string)
		return ok1 && ok2 && globMatch(b, a)
	}
	kind, rel := splitOp(op)
	var c int
	switch kind {
	case "String":
		a, ok1 := x.(string)
		b, ok2 := want.(string)
		if !ok1 || !ok2 {
			return false
		}
		c = strings.Compare(a, b)
	case "Numeric":
		a, ok1 := toFloat(x)
		b, ok2 := toFloat(want)
		if !ok1 || !ok2 {
			return false
		}
		c = cmpFloat(a, b)
	case "Timestamp":
		a, ok1 := asTime(x)
		b, ok2 := asTime(want)
		if !ok1 || !ok2 {
			return false
		}
		c = a.Compare(b)
	default:
		return false
	}
	switch rel {
	case "Equals":
		return c == 0
	case "LessThan":
		return c < 0
	case "GreaterThan":
		return c > 0
	case "LessThanEquals":
		return c <= 0
	case "GreaterThanEquals":
		return c >= 0
	}
	return false
}

func splitOp(op string) (kind, rel string) {
	for _, k := range []string{"String", "Numeric", "Timestamp"} {
		if r, ok := strings.CutPrefix(op, k); ok {
			return k, r
		}
	}
	return "", ""
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func asTime(x any) (time.Time, bool) {
	switch t := x.(type) {
	case time.Time:
		return t, true
	case string:
		v, err := parseTimestamp(t)
		return v, err == nil
	}
	return time.Time{}, false
}

// globMatch is StringMatches: * matches any run of characters, \* a literal
// star and \\ a literal backslash.
func globMatch(pattern, s string) bool {
	type tok struct {
		star bool
		lit  rune
	}
	var toks []tok
	rs := []rune(pattern)
	for i := 0; i < len(rs); i++ {
		switch {
		case rs[i] == '\\' && i+1 < len(rs):
			i++
			toks = append(toks, tok{lit: rs[i]})
		case rs[i] == '*':
			toks = append(toks, tok{star: true})
		default:
			toks = append(toks, tok{lit: rs[i]})
		}
	}
	str := []rune(s)
	// Iterative wildcard matching with backtracking to the last star.
	ti, si, starT, starS := 0, 0, -1, 0
	for si < len(str) {
		switch {
		case ti < len(toks) && !toks[ti].star && toks[ti].lit == str[si]:
			ti++
			si++
		case ti < len(toks) && toks[ti].star:
			starT, starS = ti, si
			ti++
		case starT >= 0:
			starS++
			si, ti = starS, starT+1
		default:
			return false
		}
	}
	for ti < len(toks) && toks[ti].star {
		ti++
	}
	return ti == len(toks)
}
