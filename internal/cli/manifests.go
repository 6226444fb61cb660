package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	v1 "berth.dev/berth/api/v1"
)

// manifest is one object read from the command line's files, with where it
// came from so errors can point at it.
type manifest struct {
	obj  v1.Object
	file string
	doc  int    // 1-based document in file; 0 when unknown
	path string // field path prefix inside the document ("items[2]"), or ""
}

// ref is the object as the CLI prints it: "service/web".
func (m manifest) ref() string {
	return strings.ToLower(m.obj.GetTypeMeta().Kind) + "/" + m.obj.GetMetadata().Name
}

// manifestErrors is every problem found in the inputs, so a user fixes them
// all in one round. Each prints on its own "error:" line.
type manifestErrors []error

func (e manifestErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\nerror: ")
}

func (e manifestErrors) Unwrap() []error { return e }

// stdinName is how errors name manifests read from "-".
const stdinName = "<stdin>"

// readManifests reads every -f argument (a file, a directory's *.yaml,
// *.yml and *.json files in name order, or "-" for stdin), decodes every
// document, sets -e as the environment of scoped objects that name none,
// then defaults and validates them all. It returns every error at once,
// and no manifests if there is any.
func readManifests(paths []string, stdin io.Reader, env string, envExplicit bool) ([]manifest, error) {
	var files []string
	var errs manifestErrors
	for _, p := range paths {
		if p == "-" {
			files = append(files, p)
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, &v1.Error{Kind: v1.ErrInvalid, File: p, Message: pathMessage(err)})
			continue
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, &v1.Error{Kind: v1.ErrInvalid, File: p, Message: pathMessage(err)})
			continue
		}
		var found []string
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					found = append(found, filepath.Join(p, e.Name()))
				}
			}
		}
		sort.Strings(found)
		if len(found) == 0 {
			errs = append(errs, &v1.Error{Kind: v1.ErrInvalid, File: p, Message: "no *.yaml, *.yml or *.json files in this directory"})
		}
		files = append(files, found...)
	}

	var out []manifest
	stdinRead := false
	for _, f := range files {
		var data []byte
		var err error
		name := f
		if f == "-" {
			name = stdinName
			if stdinRead {
				errs = append(errs, &v1.Error{Kind: v1.ErrInvalid, File: name, Message: "stdin given twice"})
				continue
			}
			stdinRead = true
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			errs = append(errs, &v1.Error{Kind: v1.ErrInvalid, File: name, Message: pathMessage(err)})
			continue
		}
		ms, err := decodeManifests(name, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(ms) == 0 {
			errs = append(errs, &v1.Error{Kind: v1.ErrInvalid, File: name, Message: "no objects in this file"})
		}
		for _, m := range ms {
			if err := prepare(&m, env, envExplicit); err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, m)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

func pathMessage(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, os.ErrNotExist) {
		return "no such file or directory"
	}
	return err.Error()
}

// decodeManifests decodes one file and works out which document each
// object came from, which v1.Decode does not report for objects that
// decoded fine but fail validation later.
func decodeManifests(file string, data []byte) ([]manifest, error) {
	objs, err := v1.Decode(file, data)
	if err != nil {
		return nil, err
	}
	origins := documentOrigins(data)
	ms := make([]manifest, len(objs))
	for i, obj := range objs {
		ms[i] = manifest{obj: obj, file: file}
		if len(origins) == len(objs) {
			ms[i].doc, ms[i].path = origins[i].doc, origins[i].path
		}
	}
	return ms, nil
}

type origin struct {
	doc  int
	path string
}

// documentOrigins lists, for each object the documents in data hold, its
// document number and its path inside a List or array, following
// v1.Decode's rules: empty documents hold none, a sequence or a
// {"kind": "List"} holds its items, any other document one object.
func documentOrigins(data []byte) []origin {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []origin
	for doc := 1; ; doc++ {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			return out
		}
		root := &n
		if root.Kind == yaml.DocumentNode {
			if len(root.Content) == 0 {
				continue
			}
			root = root.Content[0]
		}
		switch root.Kind {
		case yaml.SequenceNode:
			for i := range root.Content {
				out = append(out, origin{doc, fmt.Sprintf("[%d]", i)})
			}
		case yaml.MappingNode:
			items := listItems(root)
			if items == nil {
				out = append(out, origin{doc, ""})
				continue
			}
			for i := range items.Content {
				out = append(out, origin{doc, fmt.Sprintf("items[%d]", i)})
			}
		case yaml.ScalarNode:
			if root.Tag != "!!null" {
				out = append(out, origin{doc, ""})
			}
		}
	}
}

// listItems returns the items of a {"kind": "List"} mapping, or nil.
func listItems(m *yaml.Node) *yaml.Node {
	var kind string
	var items *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch m.Content[i].Value {
		case "kind":
			kind = m.Content[i+1].Value
		case "items":
			items = m.Content[i+1]
		}
	}
	if kind != "List" {
		return nil
	}
	if items == nil {
		return &yaml.Node{Kind: yaml.SequenceNode}
	}
	return items
}

// prepare puts a decoded object in its environment, defaults and validates
// it, and locates any error in its file.
func prepare(m *manifest, env string, envExplicit bool) error {
	meta := m.obj.GetMetadata()
	if m.obj.GetTypeMeta().Kind != v1.KindEnvironment {
		switch {
		case meta.Environment == "":
			meta.Environment = env
		case envExplicit && meta.Environment != env:
			// As kubectl does with -n: a flag that contradicts the
			// manifest is a mistake, not an override.
			return m.locate(v1.FieldError("metadata.environment",
				"the manifest says %q but -e says %q; drop -e or make them agree", meta.Environment, env))
		}
	}
	v1.SetDefaults(m.obj)
	if err := v1.Validate(m.obj); err != nil {
		return m.locate(err)
	}
	return nil
}

// locate returns err as a *v1.Error naming m's file, document and full
// field path.
func (m *manifest) locate(err error) error {
	var ve *v1.Error
	if !errors.As(err, &ve) {
		ve = &v1.Error{Kind: v1.ErrInvalid, Message: err.Error()}
	}
	out := *ve
	if out.File == "" {
		out.File, out.Document = m.file, m.doc
		if m.path != "" {
			if out.Field == "" {
				out.Field = m.path
			} else {
				out.Field = m.path + "." + out.Field
			}
		}
	}
	return &out
}
