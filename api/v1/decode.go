package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// manifestKinds are the kinds a user may write in a manifest. Revisions,
// instances and events are written by the platform only.
var manifestKinds = map[string]reflect.Type{
	KindEnvironment: reflect.TypeFor[Environment](),
	KindService:     reflect.TypeFor[Service](),
	KindFunction:    reflect.TypeFor[Function](),
	KindTopic:       reflect.TypeFor[Topic](),
	KindWorkflow:    reflect.TypeFor[Workflow](),
}

// objectKinds are the kinds that travel over the API.
var objectKinds = map[string]reflect.Type{
	KindEnvironment: reflect.TypeFor[Environment](),
	KindService:     reflect.TypeFor[Service](),
	KindFunction:    reflect.TypeFor[Function](),
	KindTopic:       reflect.TypeFor[Topic](),
	KindWorkflow:    reflect.TypeFor[Workflow](),
	KindRevision:    reflect.TypeFor[Revision](),
	KindInstance:    reflect.TypeFor[Instance](),
	KindEvent:       reflect.TypeFor[Event](),
}

// Limits that keep a hostile or broken input from costing more than a
// manifest can reasonably need (a walk of maxNodes takes well under a second).
// maxNodes also bounds alias expansion ("billion laughs"): an alias counts
// each time it is walked.
const (
	maxNodes = 500_000
	maxDepth = 64
)

// Decode reads the manifests in data: one or many YAML documents separated by
// "---", a JSON object, a JSON array of objects, or a List
// ({"kind": "List", "items": [...]}). Empty documents are skipped. Decoding
// is strict: an unknown field, a duplicate key, a value of the wrong type, a
// missing or unsupported apiVersion or an unknown kind is an *Error of kind
// Invalid that names file, the 1-based document, the field path and, where
// known, the line. A status written in a manifest is ignored: only the
// platform writes status.
//
// Decode neither defaults nor validates: call SetDefaults, then Validate.
func Decode(file string, data []byte) ([]Object, error) {
	docs, err := DecodeDocuments(file, data)
	if err != nil {
		return nil, err
	}
	objs := make([]Object, len(docs))
	for i, d := range docs {
		objs[i] = d.Object
	}
	return objs, nil
}

// Document is one object Decode read, with where it came from, so that an
// error found later (by Validate, or by the server) can point at it the way
// Decode's own errors do.
type Document struct {
	Object Object
	// Index is the 1-based number of the YAML document in the file, empty
	// documents included, as in Error.Document.
	Index int
	// Path is where the object sits inside its document when that is a
	// List ("items[2]") or an array ("[2]"); empty otherwise. Prefix an
	// error's Field with it.
	Path string
}

// DecodeDocuments is Decode, telling where each object came from.
func DecodeDocuments(file string, data []byte) ([]Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(normalizeJSON(data)))
	// One budget for the whole input, so that many small documents each
	// expanding aliases cannot add up to minutes of work.
	w := &walker{budget: maxNodes}
	var docs []Document
	for doc := 1; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, &Error{Kind: ErrInvalid, File: file, Document: doc, Message: yamlMessage(err)}
		}
		got, err := w.document(&n, manifestKinds, true)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.File, e.Document = file, doc
			}
			return nil, err
		}
		for i := range got {
			got[i].Index = doc
		}
		docs = append(docs, got...)
	}
}

// DecodeObject reads one JSON (or YAML) object of any kind the API carries,
// status included, as strictly as Decode.
func DecodeObject(data []byte) (Object, error) {
	dec := yaml.NewDecoder(bytes.NewReader(normalizeJSON(data)))
	var n yaml.Node
	if err := dec.Decode(&n); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Invalid("empty body: expected one object")
		}
		return nil, Invalid("%s", yamlMessage(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, Invalid("expected one object, found more than one document")
	}
	w := &walker{budget: maxNodes}
	root := documentRoot(&n)
	if root == nil {
		return nil, Invalid("empty body: expected one object")
	}
	if root.Kind != yaml.MappingNode {
		return nil, w.errorf(root, "", "expected an object with apiVersion and kind, got %s", describe(root))
	}
	return w.object(root, "", objectKinds, false)
}

// Encode renders obj for the CLI's -o flag: format "json" (indented) or
// "yaml". YAML is made from the JSON form so both use the same field names
// and order, and Decode reads either back to the same object.
func Encode(obj Object, format string) ([]byte, error) {
	b, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.GetTypeMeta().Kind, err)
	}
	switch format {
	case "json":
		return append(b, '\n'), nil
	case "yaml":
		return jsonToYAML(b)
	default:
		return nil, Invalid("unknown output format %q: use json or yaml", format)
	}
}

// jsonToYAML converts JSON to block-style YAML with yaml.v3, keeping the
// order of fields. (sigs.k8s.io/yaml's JSONToYAML goes through yaml.v2,
// whose output does not always read back: a label key "<<" comes out as a
// merge key, a DEL character unescaped.)
func jsonToYAML(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	n, err := jsonToNode(dec)
	if err != nil {
		return nil, fmt.Errorf("convert JSON to YAML: %w", err)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("convert JSON to YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("convert JSON to YAML: %w", err)
	}
	return out.Bytes(), nil
}

func jsonToNode(dec *json.Decoder) (*yaml.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if v == '{' {
			n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		for dec.More() {
			if n.Kind == yaml.MappingNode {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := k.(string)
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key})
			}
			c, err := jsonToNode(dec)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}, nil
	case json.Number:
		tag := "!!float"
		if _, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			tag = "!!int"
		} else if _, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			tag = "!!int"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(v)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}, nil
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
}

// documentRoot returns the content of a document node, or nil when the
// document is empty (nothing, or only comments).
func documentRoot(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if isNull(n) {
		return nil
	}
	return n
}

// document turns one YAML document into objects: none when empty, many when
// it is a List or a sequence.
func (w *walker) document(doc *yaml.Node, kinds map[string]reflect.Type, manifest bool) ([]Document, error) {
	root := documentRoot(doc)
	if root == nil {
		return nil, nil
	}
	var items []*yaml.Node
	prefix := ""
	switch root.Kind {
	case yaml.SequenceNode:
		items = root.Content
	case yaml.MappingNode:
		pairs, err := w.pairs(root, "")
		if err != nil {
			return nil, err
		}
		if kind := lookup(pairs, "kind"); kind == nil || kind.Value != "List" {
			obj, err := w.object(root, "", kinds, manifest)
			if err != nil {
				return nil, err
			}
			return []Document{{Object: obj}}, nil
		}
		prefix = "items"
		if items, err = w.listItems(pairs); err != nil {
			return nil, err
		}
	default:
		return nil, w.errorf(root, "", "expected an object with apiVersion and kind, got %s", describe(root))
	}
	var docs []Document
	for i, item := range items {
		path := fmt.Sprintf("%s[%d]", prefix, i)
		for item.Kind == yaml.AliasNode && item.Alias != nil {
			item = item.Alias
		}
		if item.Kind != yaml.MappingNode {
			return nil, w.errorf(item, path, "expected an object with apiVersion and kind, got %s", describe(item))
		}
		obj, err := w.object(item, path, kinds, manifest)
		if err != nil {
			return nil, err
		}
		docs = append(docs, Document{Object: obj, Path: path})
	}
	return docs, nil
}

// listItems checks the envelope of a List and returns its items.
func (w *walker) listItems(pairs []pair) ([]*yaml.Node, error) {
	var items []*yaml.Node
	for _, p := range pairs {
		switch p.key {
		case "kind", "metadata":
		case "apiVersion":
			if p.val.Value != APIVersion && p.val.Value != "v1" {
				return nil, w.errorf(p.val, "apiVersion", "unsupported apiVersion %q; expected %q", p.val.Value, APIVersion)
			}
		case "items":
			v := resolve(p.val)
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				return nil, w.errorf(v, "items", "expected a list, got %s", describe(v))
			}
			items = v.Content
		default:
			return nil, w.unknownField(p, "", []string{"apiVersion", "kind", "items", "metadata"})
		}
	}
	return items, nil
}

// object decodes one mapping into the Go type its kind names.
func (w *walker) object(n *yaml.Node, path string, kinds map[string]reflect.Type, manifest bool) (Object, error) {
	pairs, err := w.pairs(n, path)
	if err != nil {
		return nil, err
	}
	av := lookup(pairs, "apiVersion")
	switch {
	case av == nil:
		return nil, w.errorf(n, join(path, "apiVersion"), "missing apiVersion; set apiVersion: %s", APIVersion)
	case av.Kind != yaml.ScalarNode || av.Value != APIVersion:
		return nil, w.errorf(av, join(path, "apiVersion"), "unsupported apiVersion %s; expected %q", describe(av), APIVersion)
	}
	known := make([]string, 0, len(kinds))
	for k := range kinds {
		known = append(known, k)
	}
	sort.Strings(known)
	kn := lookup(pairs, "kind")
	if kn == nil {
		return nil, w.errorf(n, join(path, "kind"), "missing kind; known kinds: %s", strings.Join(known, ", "))
	}
	t, ok := kinds[kn.Value]
	if kn.Kind != yaml.ScalarNode || !ok {
		msg := fmt.Sprintf("unknown kind %s; known kinds: %s", describe(kn), strings.Join(known, ", "))
		if s := suggest(kn.Value, known); s != "" && kn.Kind == yaml.ScalarNode {
			msg = fmt.Sprintf("unknown kind %q; did you mean %q? (known kinds: %s)", kn.Value, s, strings.Join(known, ", "))
		}
		return nil, w.errorf(kn, join(path, "kind"), "%s", msg)
	}
	if manifest {
		// Only the platform writes status; a manifest copied from
		// `berth get -o yaml` still applies.
		pairs = slices.DeleteFunc(pairs, func(p pair) bool { return p.key == "status" })
	}
	v, err := w.structValue(n, pairs, t, path, 0)
	if err != nil {
		return nil, err
	}
	if err := w.refuseExplicitZeros(pairs, kn.Value, path); err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, w.errorf(n, path, "%v", err)
	}
	obj := reflect.New(t).Interface().(Object)
	jd := json.NewDecoder(bytes.NewReader(b))
	jd.DisallowUnknownFields()
	if err := jd.Decode(obj); err != nil {
		// The walk checked every field against the same struct, so this
		// is a value the walk let through but encoding/json refuses.
		return nil, w.errorf(n, path, "%v", err)
	}
	return obj, nil
}

// explicitZeros are fields where leaving the field out means "the default"
// but writing 0 is a mistake the user must hear about. Their Go type (a
// plain integer with omitempty) cannot tell the two apart once decoded, so
// the decoder, which still sees what was written, refuses them.
var explicitZeros = map[string][]struct {
	path []string
	msg  string
}{
	KindFunction: {
		{[]string{"spec", "concurrency"}, fmt.Sprintf("0 is out of range: must be at least 1 (leave it out for the default, %d)", DefaultConcurrency)},
		{[]string{"spec", "resources", "pids"}, zeroPids},
	},
	KindService: {{[]string{"spec", "resources", "pids"}, zeroPids}},
	KindEnvironment: {
		{[]string{"spec", "limits", "default", "pids"}, zeroPids},
		{[]string{"spec", "limits", "max", "pids"}, zeroPids},
	},
}

// zeroPids answers `pids: 0`, which a reader may take for "no limit": every
// instance has one.
var zeroPids = fmt.Sprintf("0 is out of range: every instance has a pids limit, at least %d (leave it out for the environment's default)", MinPids)

func (w *walker) refuseExplicitZeros(pairs []pair, kind, path string) error {
	for _, z := range explicitZeros[kind] {
		ps, field := pairs, path
		for i, key := range z.path {
			v := lookup(ps, key)
			field = join(field, key)
			if v == nil {
				break
			}
			if i == len(z.path)-1 {
				var n int64
				if v.Kind == yaml.ScalarNode && v.Tag == "!!int" && v.Decode(&n) == nil && n == 0 {
					return w.errorf(v, field, "%s", z.msg)
				}
				break
			}
			if v.Kind != yaml.MappingNode {
				break
			}
			var err error
			if ps, err = w.pairs(v, field); err != nil {
				return err
			}
		}
	}
	return nil
}

// walker walks a YAML node tree against a Go type, producing the JSON value
// that encoding/json will accept for that type, and errors that point at the
// field and line a user has to fix.
type walker struct {
	budget int
}

type pair struct {
	key string
	kn  *yaml.Node // key node, for its line
	val *yaml.Node
}

func (w *walker) errorf(n *yaml.Node, field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if n != nil && n.Line > 0 {
		msg = fmt.Sprintf("line %d: %s", n.Line, msg)
	}
	return &Error{Kind: ErrInvalid, Field: field, Message: msg}
}

func (w *walker) unknownField(p pair, path string, known []string) *Error {
	msg := fmt.Sprintf("unknown field %q", p.key)
	if s := suggest(p.key, known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return w.errorf(p.kn, join(path, p.key), "%s", msg)
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

func (w *walker) value(n *yaml.Node, t reflect.Type, path string, depth int) (any, error) {
	w.budget--
	if w.budget < 0 {
		return nil, w.errorf(n, path, "document too large (more than %d values, counting aliases)", maxNodes)
	}
	if depth > maxDepth {
		return nil, w.errorf(n, path, "nested too deeply")
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil, w.errorf(n, path, "unknown alias %q", n.Value)
		}
		return w.value(n.Alias, t, path, depth+1)
	}
	if isNull(n) {
		return nil, nil
	}
	if t == rawType {
		return w.rawValue(n, path, depth)
	}
	if t == timeType {
		if n.Kind != yaml.ScalarNode {
			return nil, w.errorf(n, path, "expected an RFC 3339 time, got %s", describe(n))
		}
		ts, err := time.Parse(time.RFC3339Nano, n.Value)
		if err != nil {
			return nil, w.errorf(n, path, "expected an RFC 3339 time like 2006-01-02T15:04:05Z, got %q", n.Value)
		}
		return ts.Format(time.RFC3339Nano), nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return w.value(n, t.Elem(), path, depth)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil, w.errorf(n, path, "expected an object, got %s", describe(n))
		}
		pairs, err := w.pairs(n, path)
		if err != nil {
			return nil, err
		}
		return w.structValue(n, pairs, t, path, depth)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil, w.errorf(n, path, "expected an object, got %s", describe(n))
		}
		if t.Key().Kind() != reflect.String {
			return nil, w.errorf(n, path, "cannot decode into %s", t)
		}
		pairs, err := w.pairs(n, path)
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(pairs))
		for _, p := range pairs {
			v, err := w.value(p.val, t.Elem(), join(path, p.key), depth+1)
			if err != nil {
				return nil, err
			}
			if v == nil && t.Elem().Kind() != reflect.Pointer {
				return nil, w.errorf(p.val, join(path, p.key), "expected %s, got null", expected(t.Elem()))
			}
			out[p.key] = v
		}
		return out, nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil, w.errorf(n, path, "expected a list, got %s", describe(n))
		}
		out := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			v, err := w.value(item, t.Elem(), p, depth+1)
			if err != nil {
				return nil, err
			}
			if v == nil {
				return nil, w.errorf(item, p, "expected %s, got null", expected(t.Elem()))
			}
			out = append(out, v)
		}
		return out, nil
	case reflect.String:
		// Any scalar is its text: `value: 8080` and `version: 1.10` mean
		// what was written, which is what users expect of env values and
		// labels.
		if n.Kind != yaml.ScalarNode {
			return nil, w.errorf(n, path, "expected a string, got %s", describe(n))
		}
		return n.Value, nil
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			return nil, w.errorf(n, path, "expected true or false, got %s", describe(n))
		}
		return b, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
			return nil, w.errorf(n, path, "expected an integer, got %s", describe(n))
		}
		lo, hi := int64(math.MinInt64)>>(64-t.Bits()), int64(math.MaxInt64)>>(64-t.Bits())
		if i < lo || i > hi {
			return nil, w.errorf(n, path, "%d is out of range (at most %d)", i, hi)
		}
		return json.Number(strconv.FormatInt(i, 10)), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&u) != nil {
			return nil, w.errorf(n, path, "expected a non-negative integer, got %s", describe(n))
		}
		if hi := uint64(math.MaxUint64) >> (64 - t.Bits()); u > hi {
			return nil, w.errorf(n, path, "%d is out of range (at most %d)", u, hi)
		}
		return json.Number(strconv.FormatUint(u, 10)), nil
	case reflect.Float32, reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&f) != nil ||
			math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, w.errorf(n, path, "expected a number, got %s", describe(n))
		}
		return f, nil
	}
	return nil, w.errorf(n, path, "cannot decode into %s", t)
}

// rawValue is free-form JSON written as YAML or JSON (a workflow's
// definition): any mapping, list or scalar, with YAML's scalar types mapped
// to JSON's. A string holding a JSON object or array is taken as that JSON,
// since Step Functions' own tooling writes definitions as a JSON string.
func (w *walker) rawValue(n *yaml.Node, path string, depth int) (any, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		if s := strings.TrimSpace(n.Value); strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[") {
			if !json.Valid([]byte(s)) {
				return nil, w.errorf(n, path, "the string is not valid JSON; write the definition as a YAML mapping or a JSON object")
			}
			return json.RawMessage(s), nil
		}
	}
	return w.anyValue(n, path, depth)
}

func (w *walker) anyValue(n *yaml.Node, path string, depth int) (any, error) {
	w.budget--
	if w.budget < 0 {
		return nil, w.errorf(n, path, "document too large (more than %d values, counting aliases)", maxNodes)
	}
	if depth > maxDepth {
		return nil, w.errorf(n, path, "nested too deeply")
	}
	n = resolve(n)
	switch n.Kind {
	case yaml.AliasNode:
		return nil, w.errorf(n, path, "unknown alias %q", n.Value)
	case yaml.MappingNode:
		pairs, err := w.pairs(n, path)
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(pairs))
		for _, p := range pairs {
			v, err := w.anyValue(p.val, join(path, p.key), depth+1)
			if err != nil {
				return nil, err
			}
			out[p.key] = v
		}
		return out, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			v, err := w.anyValue(item, fmt.Sprintf("%s[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, w.errorf(n, path, "expected true or false, got %s", describe(n))
			}
			return b, nil
		case "!!int":
			var i int64
			if err := n.Decode(&i); err == nil {
				return json.Number(strconv.FormatInt(i, 10)), nil
			}
			var u uint64
			if err := n.Decode(&u); err == nil {
				return json.Number(strconv.FormatUint(u, 10)), nil
			}
			return nil, w.errorf(n, path, "%s is out of range for an integer", n.Value)
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, w.errorf(n, path, "expected a number, got %s", describe(n))
			}
			return f, nil
		}
		// Strings, and anything else YAML has a tag for (timestamps,
		// binary): their text, as JSON has no such types.
		return n.Value, nil
	}
	return nil, nil
}

// structValue checks pairs against t's JSON fields.
func (w *walker) structValue(n *yaml.Node, pairs []pair, t reflect.Type, path string, depth int) (any, error) {
	fields := jsonFields(t)
	out := make(map[string]any, len(pairs))
	for _, p := range pairs {
		ft, ok := fields.types[p.key]
		if !ok {
			return nil, w.unknownField(p, path, fields.names)
		}
		v, err := w.value(p.val, ft, join(path, p.key), depth+1)
		if err != nil {
			return nil, err
		}
		if v != nil {
			out[p.key] = v
		}
	}
	return out, nil
}

// pairs returns a mapping's key/value pairs, with YAML merge keys ("<<")
// expanded and duplicate keys refused.
func (w *walker) pairs(n *yaml.Node, path string) ([]pair, error) {
	var own, merged []pair
	first := map[string]*yaml.Node{}
	if err := w.collect(n, path, &own, &merged, first, 0); err != nil {
		return nil, err
	}
	for _, p := range merged {
		if _, ok := first[p.key]; !ok {
			first[p.key] = p.kn
			own = append(own, p)
		}
	}
	return own, nil
}

func (w *walker) collect(n *yaml.Node, path string, own, merged *[]pair, first map[string]*yaml.Node, depth int) error {
	if depth > maxDepth {
		return w.errorf(n, path, "merge keys nested too deeply")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		w.budget--
		if w.budget < 0 {
			return w.errorf(n, path, "document too large (more than %d values, counting aliases)", maxNodes)
		}
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return w.errorf(k, path, "expected a string key, got %s", describe(k))
		}
		if k.Tag == "!!merge" {
			if err := w.merge(v, path, merged, depth); err != nil {
				return err
			}
			continue
		}
		if depth > 0 {
			// Keys from a merged mapping: the earliest wins, as in YAML.
			*merged = append(*merged, pair{k.Value, k, v})
			continue
		}
		if prev, ok := first[k.Value]; ok {
			return w.errorf(k, join(path, k.Value), "duplicate key %q (first at line %d)", k.Value, prev.Line)
		}
		first[k.Value] = k
		*own = append(*own, pair{k.Value, k, v})
	}
	return nil
}

func (w *walker) merge(v *yaml.Node, path string, merged *[]pair, depth int) error {
	v = resolve(v)
	switch v.Kind {
	case yaml.MappingNode:
		return w.collect(v, path, nil, merged, nil, depth+1)
	case yaml.SequenceNode:
		for _, m := range v.Content {
			m = resolve(m)
			if m.Kind != yaml.MappingNode {
				return w.errorf(m, path, "a merge key (<<) takes mappings, got %s", describe(m))
			}
			if err := w.collect(m, path, nil, merged, nil, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return w.errorf(v, path, "a merge key (<<) takes a mapping, got %s", describe(v))
}

// resolve follows aliases. The parser refuses an alias to an anchor not yet
// seen, but an anchor may contain an alias to itself, so the chain is bounded.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < maxDepth; i++ {
		n = n.Alias
	}
	return n
}

func lookup(pairs []pair, key string) *yaml.Node {
	for _, p := range pairs {
		if p.key == key {
			return resolve(p.val)
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "an object"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

func expected(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		return "a list"
	case reflect.Bool:
		return "true or false"
	}
	return "a number"
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// parserProblems are the messages of yaml.v3's parser (not its scanner).
// For these it reports the line counting from 0, of the structure the
// problem is in: yamlMessage counts from 1 like everything else.
var parserProblems = map[string]bool{
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
	"found undefined tag handle":             true,
}

func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, problem, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, problem
			}
		}
	}
	if parserProblems[msg] {
		line++
	}
	if line > 0 {
		return fmt.Sprintf("line %d: %s", line, msg)
	}
	return msg
}

// fieldSet is the JSON view of a struct: field name → type, with embedded
// structs without a JSON name (`json:",inline"`) flattened as encoding/json
// does.
type fieldSet struct {
	types map[string]reflect.Type
	names []string
}

var fieldCache sync.Map // reflect.Type → *fieldSet

func jsonFields(t reflect.Type) *fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{types: map[string]reflect.Type{}}
	addFields(fs, t)
	sort.Strings(fs.names)
	fieldCache.Store(t, fs)
	return fs
}

func addFields(fs *fieldSet, t reflect.Type) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(fs, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs.types[name] = f.Type
		fs.names = append(fs.names, name)
	}
}

// suggest returns the known name closest to s, if it is close enough to be a
// likely typo.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(s, k) {
			return k
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(k)); d < bestD && d <= len(k)/2 {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// normalizeJSON rewrites valid JSON so the YAML parser reads it as JSON
// means it: YAML refuses some legal JSON (the escapes \/ and surrogate pairs
// such as Python's json.dumps writes, tabs before the first token). Each
// token stays on its line, so errors still point at the right line. Anything
// that is not valid JSON is returned unchanged.
func normalizeJSON(data []byte) []byte {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') || !json.Valid(data) {
		return data
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out bytes.Buffer
	// Each open container records whether it is an object, and how many
	// tokens it has seen, to put back the ',' and ':' that Token drops.
	type frame struct {
		object bool
		n      int
	}
	var stack []frame
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			break
		}
		// data[start:end] is the token and the spaces and delimiters
		// before it; a JSON token holds no raw newline, so every newline
		// there comes before the token.
		for range bytes.Count(data[start:dec.InputOffset()], []byte{'\n'}) {
			out.WriteByte('\n')
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			out.WriteByte(byte(d))
		} else {
			if len(stack) > 0 {
				top := &stack[len(stack)-1]
				switch {
				case top.object && top.n%2 == 1:
					out.WriteString(": ")
				case top.n > 0:
					out.WriteString(", ")
				}
				top.n++
			}
			switch v := tok.(type) {
			case json.Delim:
				out.WriteByte(byte(v))
				stack = append(stack, frame{object: v == '{'})
			case string:
				writeYAMLSafeString(&out, v)
			case json.Number:
				out.WriteString(string(v))
			case bool:
				out.WriteString(strconv.FormatBool(v))
			case nil:
				out.WriteString("null")
			}
		}
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// writeYAMLSafeString writes s as a JSON string that YAML reads back
// unchanged: every character YAML does not allow raw or treats as a line
// break (controls, DEL, C1 controls including NEL, U+2028, U+2029, the byte
// order mark, U+FFFE, U+FFFF) is escaped as \uXXXX.
func writeYAMLSafeString(out *bytes.Buffer, s string) {
	out.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			out.WriteByte('\\')
			out.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 ||
			r == 0xfeff || r == 0xfffe || r == 0xffff:
			fmt.Fprintf(out, "\\u%04x", r)
		default:
			out.WriteRune(r)
		}
	}
	out.WriteByte('"')
}
