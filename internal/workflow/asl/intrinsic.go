package asl

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"math"
	"strings"
)

// intrinsic is a parsed intrinsic function call such as
// States.Format('Hello, {}!', $.name).
type intrinsic struct {
	name string
	args []iarg
}

type iargKind int

const (
	argLiteral iargKind = iota
	argPath
	argCall
)

type iarg struct {
	kind iargKind
	lit  any
	// raw is a string literal as written, escapes included: States.Format
	// needs to tell an escaped \{ from a placeholder {.
	raw  string
	path *jpath
	call *intrinsic
}

type arity struct{ min, max int } // max -1: unbounded

// intrinsicFunc is one intrinsic function: how many arguments it takes and
// what it makes of them, once they are evaluated.
type intrinsicFunc struct {
	arity
	eval func(a *iargs) (any, error)
}

// intrinsics are the functions of the States Language, by name.
var intrinsics = map[string]intrinsicFunc{
	"States.Format":         {arity{1, -1}, statesFormat},
	"States.StringToJson":   {arity{1, 1}, statesStringToJSON},
	"States.JsonToString":   {arity{1, 1}, statesJSONToString},
	"States.Array":          {arity{0, -1}, statesArray},
	"States.ArrayPartition": {arity{2, 2}, statesArrayPartition},
	"States.ArrayContains":  {arity{2, 2}, statesArrayContains},
	"States.ArrayRange":     {arity{3, 3}, statesArrayRange},
	"States.ArrayGetItem":   {arity{2, 2}, statesArrayGetItem},
	"States.ArrayLength":    {arity{1, 1}, statesArrayLength},
	"States.ArrayUnique":    {arity{1, 1}, statesArrayUnique},
	"States.Base64Encode":   {arity{1, 1}, statesBase64Encode},
	"States.Base64Decode":   {arity{1, 1}, statesBase64Decode},
	"States.Hash":           {arity{2, 2}, statesHash},
	"States.JsonMerge":      {arity{3, 3}, statesJSONMerge},
	"States.MathRandom":     {arity{2, 3}, statesMathRandom},
	"States.MathAdd":        {arity{2, 2}, statesMathAdd},
	"States.StringSplit":    {arity{2, 2}, statesStringSplit},
	"States.UUID":           {arity{0, 0}, statesUUID},
}

var hashes = map[string]func() hash.Hash{
	"MD5": md5.New, "SHA-1": sha1.New, "SHA-256": sha256.New, "SHA-384": sha512.New384, "SHA-512": sha512.New,
}

// isIntrinsic tells an intrinsic call from a path in a ".$" field.
func isIntrinsic(s string) bool { return strings.HasPrefix(s, "States.") }

func parseIntrinsic(s string) (*intrinsic, error) {
	p := &iparser{s: s}
	c, err := p.call()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(s) {
		return nil, fmt.Errorf("unexpected %q after the closing ) of %s", s[p.i:], c.name)
	}
	return c, nil
}

type iparser struct {
	s string
	i int
}

func (p *iparser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n') {
		p.i++
	}
}

func (p *iparser) call() (*intrinsic, error) {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != '(' {
		p.i++
	}
	name := strings.TrimSpace(p.s[start:p.i])
	if p.i == len(p.s) {
		return nil, fmt.Errorf("%q is not an intrinsic function call: expected (", p.s[start:])
	}
	ar, ok := intrinsics[name]
	if !ok {
		return nil, fmt.Errorf("unknown intrinsic function %q", name)
	}
	p.i++ // (
	c := &intrinsic{name: name}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ')' {
		p.i++
	} else {
		for {
			a, err := p.arg()
			if err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			c.args = append(c.args, a)
			p.space()
			if p.i >= len(p.s) {
				return nil, fmt.Errorf("%s: missing )", name)
			}
			if p.s[p.i] == ')' {
				p.i++
				break
			}
			if p.s[p.i] != ',' {
				return nil, fmt.Errorf("%s: expected , or ) at %q", name, p.s[p.i:])
			}
			p.i++
		}
	}
	if len(c.args) < ar.min || (ar.max >= 0 && len(c.args) > ar.max) {
		want := fmt.Sprint(ar.min)
		switch {
		case ar.max < 0:
			want = fmt.Sprintf("at least %d", ar.min)
		case ar.max != ar.min:
			want = fmt.Sprintf("%d to %d", ar.min, ar.max)
		}
		return nil, fmt.Errorf("%s takes %s arguments, got %d", name, want, len(c.args))
	}
	return c, c.check()
}

func (p *iparser) arg() (iarg, error) {
	p.space()
	if p.i >= len(p.s) {
		return iarg{}, fmt.Errorf("missing argument")
	}
	rest := p.s[p.i:]
	switch {
	case rest[0] == '\'':
		var val, raw strings.Builder
		for j := 1; j < len(rest); j++ {
			c := rest[j]
			if c == '\\' && j+1 < len(rest) {
				raw.WriteByte(c)
				raw.WriteByte(rest[j+1])
				val.WriteByte(rest[j+1])
				j++
				continue
			}
			if c == '\'' {
				p.i += j + 1
				return iarg{kind: argLiteral, lit: val.String(), raw: raw.String()}, nil
			}
			raw.WriteByte(c)
			val.WriteByte(c)
		}
		return iarg{}, fmt.Errorf("unterminated string %s", rest)
	case rest[0] == '$':
		end, depth, quote := 0, 0, byte(0)
	scan:
		for ; end < len(rest); end++ {
			c := rest[end]
			switch {
			case quote != 0:
				if c == '\\' {
					end++
				} else if c == quote {
					quote = 0
				}
			case c == '\'' || c == '"':
				quote = c
			case c == '[':
				depth++
			case c == ']':
				depth--
			case depth == 0 && (c == ',' || c == ')'):
				break scan
			}
		}
		jp, err := parsePath(strings.TrimSpace(rest[:end]))
		if err != nil {
			return iarg{}, err
		}
		p.i += end
		return iarg{kind: argPath, path: jp}, nil
	case strings.HasPrefix(rest, "States."):
		c, err := p.call()
		if err != nil {
			return iarg{}, err
		}
		return iarg{kind: argCall, call: c}, nil
	}
	end := 0
	for end < len(rest) && rest[end] != ',' && rest[end] != ')' {
		end++
	}
	tok := strings.TrimSpace(rest[:end])
	p.i += end
	switch tok {
	case "true":
		return iarg{kind: argLiteral, lit: true}, nil
	case "false":
		return iarg{kind: argLiteral, lit: false}, nil
	case "null":
		return iarg{kind: argLiteral, lit: nil}, nil
	}
	var n json.Number
	if err := json.Unmarshal([]byte(tok), &n); err != nil || tok == "" || tok[0] == '"' {
		return iarg{}, fmt.Errorf("bad argument %q: expected a 'string', a number, true, false, null, a path or an intrinsic function", tok)
	}
	return iarg{kind: argLiteral, lit: n}, nil
}

// check catches at Parse time what literal arguments already make certain to fail.
func (c *intrinsic) check() error {
	lit := func(i int) (any, bool) {
		if i < len(c.args) && c.args[i].kind == argLiteral {
			return c.args[i].lit, true
		}
		return nil, false
	}
	switch c.name {
	case "States.Format":
		if c.args[0].kind == argLiteral {
			if _, ok := c.args[0].lit.(string); !ok {
				return fmt.Errorf("States.Format: the template must be a string")
			}
			if n := strings.Count(formatRaw(c.args[0].raw), "{}"); n != len(c.args)-1 {
				return fmt.Errorf("States.Format: the template has %d {} placeholders but %d arguments follow it", n, len(c.args)-1)
			}
		}
	case "States.Hash":
		if v, ok := lit(1); ok {
			if s, _ := v.(string); hashes[s] == nil {
				return fmt.Errorf("States.Hash: unknown algorithm %v (use MD5, SHA-1, SHA-256, SHA-384 or SHA-512)", v)
			}
		}
	case "States.JsonMerge":
		if v, ok := lit(2); ok && v != false {
			return fmt.Errorf("States.JsonMerge: only shallow merges are supported: the third argument must be false")
		}
	}
	return nil
}

// formatRaw replaces escaped characters of a raw template with a byte that is
// never a brace, so that only unescaped {} count as placeholders.
func formatRaw(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			b.WriteByte(0)
			i++
			continue
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

func intrinsicErr(format string, args ...any) error {
	return &Error{Name: ErrIntrinsicFailure, Cause: fmt.Sprintf(format, args...)}
}

// eval evaluates the arguments of the call, then the call.
func (c *intrinsic) eval(env *evalEnv) (any, error) {
	args := &iargs{call: c, env: env, v: make([]any, len(c.args))}
	for i, a := range c.args {
		switch a.kind {
		case argLiteral:
			args.v[i] = a.lit
		case argPath:
			v, ok := env.lookup(a.path)
			if !ok {
				return nil, intrinsicErr("%s: the path %s in argument %d matched nothing", c.name, a.path.raw, i+1)
			}
			args.v[i] = v
		case argCall:
			v, err := a.call.eval(env)
			if err != nil {
				return nil, err
			}
			args.v[i] = v
		}
	}
	f, ok := intrinsics[c.name]
	if !ok {
		return nil, intrinsicErr("unknown intrinsic function %s", c.name)
	}
	return f.eval(args)
}

// iargs are the evaluated arguments of a call, with accessors that fail
// with an intrinsic failure naming the function and the argument.
type iargs struct {
	call *intrinsic
	env  *evalEnv
	v    []any
}

func (a *iargs) str(i int) (string, error) {
	s, ok := a.v[i].(string)
	if !ok {
		return "", intrinsicErr("%s: argument %d must be a string, not %s", a.call.name, i+1, typeName(a.v[i]))
	}
	return s, nil
}

func (a *iargs) arr(i int) ([]any, error) {
	v, ok := a.v[i].([]any)
	if !ok {
		return nil, intrinsicErr("%s: argument %d must be an array, not %s", a.call.name, i+1, typeName(a.v[i]))
	}
	return v, nil
}

func (a *iargs) integer(i int) (int, error) {
	n, ok := toInt(a.v[i])
	if !ok {
		return 0, intrinsicErr("%s: argument %d must be an integer, not %s", a.call.name, i+1, string(encodeValue(a.v[i])))
	}
	return n, nil
}

// integers reads arguments 0 to n-1 as integers.
func (a *iargs) integers(n int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		v, err := a.integer(i)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func statesFormat(a *iargs) (any, error) {
	tmpl, err := a.str(0)
	if err != nil {
		return nil, err
	}
	raw := tmpl
	if a.call.args[0].kind == argLiteral {
		raw = a.call.args[0].raw
	}
	return format(raw, a.v[1:])
}

func statesStringToJSON(a *iargs) (any, error) {
	s, err := a.str(0)
	if err != nil {
		return nil, err
	}
	v, err := decodeValue([]byte(s))
	if err != nil || strings.TrimSpace(s) == "" {
		return nil, intrinsicErr("States.StringToJson: %q is not JSON", s)
	}
	return v, nil
}

func statesJSONToString(a *iargs) (any, error) {
	return string(encodeValue(a.v[0])), nil
}

func statesArray(a *iargs) (any, error) {
	return append([]any{}, a.v...), nil
}

func statesArrayPartition(a *iargs) (any, error) {
	arr, err := a.arr(0)
	if err != nil {
		return nil, err
	}
	size, err := a.integer(1)
	if err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, intrinsicErr("States.ArrayPartition: the chunk size must be positive, got %d", size)
	}
	out := []any{}
	for i := 0; i < len(arr); i += size {
		out = append(out, append([]any{}, arr[i:min(i+size, len(arr))]...))
	}
	return out, nil
}

func statesArrayContains(a *iargs) (any, error) {
	arr, err := a.arr(0)
	if err != nil {
		return nil, err
	}
	for _, v := range arr {
		if equalValues(v, a.v[1]) {
			return true, nil
		}
	}
	return false, nil
}

func statesArrayRange(a *iargs) (any, error) {
	n, err := a.integers(3)
	if err != nil {
		return nil, err
	}
	start, end, step := n[0], n[1], n[2]
	if step == 0 {
		return nil, intrinsicErr("States.ArrayRange: the step must not be 0")
	}
	out := []any{}
	for v := start; (step > 0 && v <= end) || (step < 0 && v >= end); v += step {
		if len(out) == 1000 {
			return nil, intrinsicErr("States.ArrayRange: at most 1000 items")
		}
		out = append(out, intValue(v))
	}
	return out, nil
}

func statesArrayGetItem(a *iargs) (any, error) {
	arr, err := a.arr(0)
	if err != nil {
		return nil, err
	}
	i, err := a.integer(1)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(arr) {
		return nil, intrinsicErr("States.ArrayGetItem: index %d is out of range for an array of %d", i, len(arr))
	}
	return arr[i], nil
}

func statesArrayLength(a *iargs) (any, error) {
	arr, err := a.arr(0)
	if err != nil {
		return nil, err
	}
	return intValue(len(arr)), nil
}

func statesArrayUnique(a *iargs) (any, error) {
	arr, err := a.arr(0)
	if err != nil {
		return nil, err
	}
	out := []any{}
next:
	for _, v := range arr {
		for _, u := range out {
			if equalValues(u, v) {
				continue next
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func statesBase64Encode(a *iargs) (any, error) {
	s, err := a.str(0)
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.EncodeToString([]byte(s)), nil
}

func statesBase64Decode(a *iargs) (any, error) {
	s, err := a.str(0)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, intrinsicErr("States.Base64Decode: %v", err)
	}
	return string(b), nil
}

func statesHash(a *iargs) (any, error) {
	alg, err := a.str(1)
	if err != nil {
		return nil, err
	}
	h := hashes[alg]
	if h == nil {
		return nil, intrinsicErr("States.Hash: unknown algorithm %q (use MD5, SHA-1, SHA-256, SHA-384 or SHA-512)", alg)
	}
	data, ok := a.v[0].(string)
	if !ok {
		data = string(encodeValue(a.v[0]))
	}
	sum := h()
	sum.Write([]byte(data))
	return hex.EncodeToString(sum.Sum(nil)), nil
}

func statesJSONMerge(a *iargs) (any, error) {
	x, ok1 := a.v[0].(map[string]any)
	y, ok2 := a.v[1].(map[string]any)
	if !ok1 || !ok2 {
		return nil, intrinsicErr("States.JsonMerge: both arguments must be objects")
	}
	if a.v[2] != false {
		return nil, intrinsicErr("States.JsonMerge: only shallow merges are supported: the third argument must be false")
	}
	out := make(map[string]any, len(x)+len(y))
	for k, v := range x {
		out[k] = v
	}
	for k, v := range y {
		out[k] = v
	}
	return out, nil
}

// statesMathRandom draws from the execution's recorded randomness, so a
// replay draws the same number; a third (seed) argument is accepted and
// ignored.
func statesMathRandom(a *iargs) (any, error) {
	lo, err := a.integer(0)
	if err != nil {
		return nil, err
	}
	hi, err := a.integer(1)
	if err != nil {
		return nil, err
	}
	if hi <= lo {
		return nil, intrinsicErr("States.MathRandom: the end (%d) must be greater than the start (%d)", hi, lo)
	}
	r := a.env.random()
	return intValue(lo + int(math.Floor(r*float64(hi-lo)))), nil
}

func statesMathAdd(a *iargs) (any, error) {
	n, err := a.integers(2)
	if err != nil {
		return nil, err
	}
	return intValue(n[0] + n[1]), nil
}

func statesStringSplit(a *iargs) (any, error) {
	s, err := a.str(0)
	if err != nil {
		return nil, err
	}
	delims, err := a.str(1)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(delims, r) }) {
		out = append(out, part)
	}
	return out, nil
}

func statesUUID(a *iargs) (any, error) {
	return a.env.uuid(), nil
}

func format(raw string, args []any) (any, error) {
	var b strings.Builder
	next := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			b.WriteByte(raw[i+1])
			i++
			continue
		}
		if c == '{' && i+1 < len(raw) && raw[i+1] == '}' {
			if next >= len(args) {
				return nil, intrinsicErr("States.Format: more {} placeholders than arguments")
			}
			switch v := args[next].(type) {
			case string:
				b.WriteString(v)
			case []any, map[string]any:
				return nil, intrinsicErr("States.Format: argument %d is an %s; only strings, numbers, booleans and null can be formatted", next+2, typeName(v))
			default:
				b.Write(encodeValue(v))
			}
			next++
			i++
			continue
		}
		b.WriteByte(c)
	}
	if next != len(args) {
		return nil, intrinsicErr("States.Format: %d arguments but %d {} placeholders", len(args), next)
	}
	return b.String(), nil
}
