package asl

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// jpath is a compiled JSONPath in the subset Step Functions accepts: "$" or
// "$$" (the context object) followed by .name, ['name'], [n] (negative counts
// from the end), [a:b] slices, [n,m] and ['a','b'] unions, * wildcards and ..
// descent. A path is definite (a "reference path" in the specification) when
// it names at most one node: no wildcard, slice, union or descent.
type jpath struct {
	raw      string
	context  bool
	segs     []pseg
	definite bool
}

type psegKind int

const (
	segChild psegKind = iota
	segIndex
	segWildcard
	segSlice
	segUnion
	segDescend // ..name or ..*; name "" means every node
)

type pseg struct {
	kind   psegKind
	name   string
	index  int
	names  []string
	idxs   []int
	lo, hi *int
}

func parsePath(s string) (*jpath, error) {
	p := &jpath{raw: s, definite: true}
	if !strings.HasPrefix(s, "$") {
		return nil, fmt.Errorf("path %q must start with $", s)
	}
	i := 1
	if strings.HasPrefix(s, "$$") {
		p.context = true
		i = 2
	}
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], ".."):
			i += 2
			name, n := dotName(s[i:])
			if n == 0 && !strings.HasPrefix(s[i:], "*") {
				return nil, fmt.Errorf("path %q: expected a name after .. at offset %d", s, i)
			}
			if n == 0 {
				n = 1
				name = ""
			}
			p.segs = append(p.segs, pseg{kind: segDescend, name: name})
			p.definite = false
			i += n
		case s[i] == '.':
			i++
			if strings.HasPrefix(s[i:], "*") {
				p.segs = append(p.segs, pseg{kind: segWildcard})
				p.definite = false
				i++
				continue
			}
			name, n := dotName(s[i:])
			if n == 0 {
				return nil, fmt.Errorf("path %q: expected a name after . at offset %d", s, i)
			}
			p.segs = append(p.segs, pseg{kind: segChild, name: name})
			i += n
		case s[i] == '[':
			seg, n, err := bracket(s[i:])
			if err != nil {
				return nil, fmt.Errorf("path %q: %v", s, err)
			}
			if seg.kind != segChild && seg.kind != segIndex {
				p.definite = false
			}
			p.segs = append(p.segs, seg)
			i += n
		default:
			return nil, fmt.Errorf("path %q: unexpected %q at offset %d", s, s[i], i)
		}
	}
	return p, nil
}

// dotName reads a name in dot notation: everything up to the next . or [.
func dotName(s string) (string, int) {
	n := 0
	for n < len(s) && s[n] != '.' && s[n] != '[' && s[n] != '*' && s[n] != ' ' && s[n] != ',' && s[n] != ')' {
		n++
	}
	return s[:n], n
}

func bracket(s string) (pseg, int, error) {
	end := -1
	inQuote := byte(0)
	for i := 1; i < len(s); i++ {
		c := s[i]
		if inQuote != 0 {
			if c == '\\' {
				i++
			} else if c == inQuote {
				inQuote = 0
			}
			continue
		}
		if c == '\'' || c == '"' {
			inQuote = c
		} else if c == ']' {
			end = i
			break
		}
	}
	if end < 0 {
		return pseg{}, 0, fmt.Errorf("unclosed [")
	}
	body := strings.TrimSpace(s[1:end])
	n := end + 1
	switch {
	case body == "*":
		return pseg{kind: segWildcard}, n, nil
	case strings.HasPrefix(body, "?"):
		return pseg{}, 0, fmt.Errorf("filter expressions are not supported")
	case body == "":
		return pseg{}, 0, fmt.Errorf("empty []")
	case body[0] == '\'' || body[0] == '"':
		var names []string
		for _, part := range splitTop(body) {
			part = strings.TrimSpace(part)
			if len(part) < 2 || (part[0] != '\'' && part[0] != '"') || part[len(part)-1] != part[0] {
				return pseg{}, 0, fmt.Errorf("bad quoted name %s", part)
			}
			names = append(names, unescapeQuoted(part[1:len(part)-1]))
		}
		if len(names) == 1 {
			return pseg{kind: segChild, name: names[0]}, n, nil
		}
		return pseg{kind: segUnion, names: names}, n, nil
	case strings.Contains(body, ":"):
		parts := strings.Split(body, ":")
		if len(parts) > 2 {
			return pseg{}, 0, fmt.Errorf("slice steps are not supported")
		}
		seg := pseg{kind: segSlice}
		for k, part := range parts {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			v, err := strconv.Atoi(part)
			if err != nil {
				return pseg{}, 0, fmt.Errorf("bad slice bound %q", part)
			}
			if k == 0 {
				seg.lo = &v
			} else {
				seg.hi = &v
			}
		}
		return seg, n, nil
	default:
		var idxs []int
		for _, part := range strings.Split(body, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil {
				return pseg{}, 0, fmt.Errorf("bad array index %q", part)
			}
			idxs = append(idxs, v)
		}
		if len(idxs) == 1 {
			return pseg{kind: segIndex, index: idxs[0]}, n, nil
		}
		return pseg{kind: segUnion, idxs: idxs}, n, nil
	}
}

func splitTop(s string) []string {
	var parts []string
	start, inQuote := 0, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if inQuote != 0 {
			if c == '\\' {
				i++
			} else if c == inQuote {
				inQuote = 0
			}
			continue
		}
		if c == '\'' || c == '"' {
			inQuote = c
		} else if c == ',' {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func unescapeQuoted(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// get evaluates the path against v. A definite path returns the node or
// ok=false; an indefinite one returns the list of matches (possibly empty), as
// Jayway JSONPath, which Step Functions uses, does.
func (p *jpath) get(v any) (any, bool) {
	if p.definite {
		for _, s := range p.segs {
			switch s.kind {
			case segChild:
				m, ok := v.(map[string]any)
				if !ok {
					return nil, false
				}
				if v, ok = m[s.name]; !ok {
					return nil, false
				}
			case segIndex:
				a, ok := v.([]any)
				if !ok {
					return nil, false
				}
				i := s.index
				if i < 0 {
					i += len(a)
				}
				if i < 0 || i >= len(a) {
					return nil, false
				}
				v = a[i]
			}
		}
		return v, true
	}
	nodes := []any{v}
	for _, s := range p.segs {
		var next []any
		for _, n := range nodes {
			next = s.apply(n, next)
		}
		nodes = next
	}
	if nodes == nil {
		nodes = []any{}
	}
	return nodes, true
}

func (s pseg) apply(v any, out []any) []any {
	switch s.kind {
	case segChild:
		if m, ok := v.(map[string]any); ok {
			if c, ok := m[s.name]; ok {
				out = append(out, c)
			}
		}
	case segIndex:
		if a, ok := v.([]any); ok {
			i := s.index
			if i < 0 {
				i += len(a)
			}
			if i >= 0 && i < len(a) {
				out = append(out, a[i])
			}
		}
	case segWildcard:
		switch t := v.(type) {
		case []any:
			out = append(out, t...)
		case map[string]any:
			for _, k := range sortedKeys(t) {
				out = append(out, t[k])
			}
		}
	case segSlice:
		if a, ok := v.([]any); ok {
			lo, hi := 0, len(a)
			if s.lo != nil {
				lo = clampIndex(*s.lo, len(a))
			}
			if s.hi != nil {
				hi = clampIndex(*s.hi, len(a))
			}
			if lo < hi {
				out = append(out, a[lo:hi]...)
			}
		}
	case segUnion:
		for _, name := range s.names {
			out = pseg{kind: segChild, name: name}.apply(v, out)
		}
		for _, i := range s.idxs {
			out = pseg{kind: segIndex, index: i}.apply(v, out)
		}
	case segDescend:
		out = descend(v, s.name, out)
	}
	return out
}

func clampIndex(i, n int) int {
	if i < 0 {
		i += n
	}
	return max(0, min(i, n))
}

// descend collects, in document order (object keys sorted), every value named
// name below v, or every node below v when name is "".
func descend(v any, name string, out []any) []any {
	switch t := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(t) {
			if name == "" || k == name {
				out = append(out, t[k])
			}
		}
		for _, k := range sortedKeys(t) {
			out = descend(t[k], name, out)
		}
	case []any:
		if name == "" {
			out = append(out, t...)
		}
		for _, c := range t {
			out = descend(c, name, out)
		}
	}
	return out
}

// set returns a copy of root with the node the (definite) path names set to
// value, creating missing objects on the way. Only the objects and arrays on
// the path are copied: values are shared and never mutated.
func (p *jpath) set(root, value any) (any, error) {
	return setSegs(root, p.segs, value, p.raw)
}

func setSegs(v any, segs []pseg, value any, raw string) (any, error) {
	if len(segs) == 0 {
		return value, nil
	}
	s := segs[0]
	switch s.kind {
	case segChild:
		var m map[string]any
		switch t := v.(type) {
		case map[string]any:
			m = make(map[string]any, len(t)+1)
			for k, c := range t {
				m[k] = c
			}
		case nil:
			m = map[string]any{}
		default:
			return nil, fmt.Errorf("ResultPath %s: cannot set field %q on a %s", raw, s.name, typeName(v))
		}
		c, err := setSegs(m[s.name], segs[1:], value, raw)
		if err != nil {
			return nil, err
		}
		m[s.name] = c
		return m, nil
	case segIndex:
		a, ok := v.([]any)
		i := s.index
		if ok && i < 0 {
			i += len(a)
		}
		if !ok || i < 0 || i >= len(a) {
			return nil, fmt.Errorf("ResultPath %s: no array element [%d] in %s", raw, s.index, typeName(v))
		}
		cp := append([]any(nil), a...)
		c, err := setSegs(cp[i], segs[1:], value, raw)
		if err != nil {
			return nil, err
		}
		cp[i] = c
		return cp, nil
	}
	return nil, fmt.Errorf("ResultPath %s is not a reference path", raw)
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64, int:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
