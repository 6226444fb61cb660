package stack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	v1 "berth.dev/berth/api/v1"
	"go.yaml.in/yaml/v3"
)

// DefaultValuesFile is the stack's own values, the base every values file
// and --set is merged over.
const DefaultValuesFile = "values.yaml"

// Load reads a stack folder: every .yaml, .yml and .tpl file in it and its
// subfolders is a template (path relative to dir, with '/'), except
// values*.yaml at the top, which are values files. DefaultValuesFile is
// kept among the templates' sources so a promote can render again with
// the stack's own defaults.
func Load(dir string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml", ".tpl":
		default:
			return nil
		}
		if !strings.Contains(rel, "/") && strings.HasPrefix(rel, "values") && rel != DefaultValuesFile {
			return nil // an environment's values file, given with -f
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = string(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stack %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, v1.Invalid("stack %s has no templates (.yaml, .yml or .tpl files)", dir)
	}
	return files, nil
}

// Values merges, in order, the stack's DefaultValuesFile (from sources),
// each values file and each --set (key.path=value) into one tree. Maps
// merge key by key; anything else is replaced.
func Values(sources map[string]string, files map[string][]byte, order []string, sets []string) (map[string]any, error) {
	out := map[string]any{}
	if def, ok := sources[DefaultValuesFile]; ok {
		if err := mergeYAML(out, DefaultValuesFile, []byte(def)); err != nil {
			return nil, err
		}
	}
	for _, name := range order {
		if err := mergeYAML(out, name, files[name]); err != nil {
			return nil, err
		}
	}
	for _, set := range sets {
		path, val, ok := strings.Cut(set, "=")
		if !ok || path == "" {
			return nil, v1.Invalid("--set %q: expected key.path=value", set)
		}
		keys := strings.Split(path, ".")
		m := out
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = scalar(val)
	}
	return out, nil
}

// scalar reads a --set value as YAML would read it: numbers and booleans
// typed, the rest a string.
func scalar(s string) any {
	if b, err := strconv.ParseBool(s); err == nil {
		return b
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f
	}
	return s
}

func mergeYAML(into map[string]any, file string, data []byte) error {
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return &v1.Error{Kind: v1.ErrInvalid, File: file, Message: fmt.Sprintf("values: %v", err)}
	}
	merge(into, m)
	return nil
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// Meta is what templates see besides .Values, as .Stack.
type Meta struct {
	Name        string
	Environment string
}

// templateErr matches text/template's "template: NAME:LINE[:COL]: MSG".
var templateErr = regexp.MustCompile(`^template: ([^:]+):(\d+)(?::\d+)?: (.*)$`)

// fileError turns a text/template error into an *v1.Error naming the file
// and line.
func fileError(fallback string, err error) error {
	msg := err.Error()
	var ee template.ExecError
	if errors.As(err, &ee) {
		msg = ee.Err.Error()
	}
	if m := templateErr.FindStringSubmatch(msg); m != nil {
		rest := m[3]
		// Exec errors repeat the template name: "executing \"f\" at <.X>: …".
		if i := strings.Index(rest, "at <"); strings.HasPrefix(rest, "executing ") && i > 0 {
			rest = rest[i:]
		}
		return &v1.Error{Kind: v1.ErrInvalid, File: m[1], Message: "line " + m[2] + ": " + rest}
	}
	return &v1.Error{Kind: v1.ErrInvalid, File: fallback, Message: msg}
}

// Render executes every template of sources but helpers (files whose name
// starts with "_", and .tpl files, which only define templates) and
// DefaultValuesFile, with .Values and .Stack. Missing values render empty,
// as in helm; `required` makes one mandatory. Rendered files that hold
// only whitespace and comments are dropped.
func Render(sources map[string]string, values map[string]any, meta Meta) ([]v1.StackManifest, error) {
	root := template.New("").Option("missingkey=zero")
	root.Funcs(funcs(root))
	names := slices.Sorted(maps.Keys(sources))
	for _, name := range names {
		if name == DefaultValuesFile {
			continue
		}
		if _, err := root.New(name).Parse(sources[name]); err != nil {
			return nil, fileError(name, err)
		}
	}
	data := map[string]any{"Values": values, "Stack": meta}
	var out []v1.StackManifest
	for _, name := range names {
		base := filepath.Base(name)
		if name == DefaultValuesFile || strings.HasPrefix(base, "_") || filepath.Ext(name) == ".tpl" {
			continue
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return nil, fileError(name, err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if onlyComments(text) {
			continue
		}
		out = append(out, v1.StackManifest{File: name, Content: text})
	}
	return out, nil
}

func onlyComments(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" {
			return false
		}
	}
	return true
}

// maxIncludeDepth bounds nested includes, as helm's does.
const maxIncludeDepth = 1000

// funcs are the helpers templates may call, a small subset of helm's:
// default, required, quote, toYaml, toJson, indent, nindent, include,
// upper, lower, trim, replace.
func funcs(root *template.Template) template.FuncMap {
	// Each include starts a new execution, out of reach of text/template's
	// own depth limit: a template that includes itself would overflow the
	// stack, which kills the process rather than failing the render.
	depth := 0
	return template.FuncMap{
		"default": func(def any, v ...any) any {
			if len(v) == 0 || empty(v[0]) {
				return def
			}
			return v[0]
		},
		"required": func(msg string, v any) (any, error) {
			if empty(v) {
				return nil, errors.New(msg)
			}
			return v, nil
		},
		"quote": func(v any) string {
			if v == nil {
				return `""`
			}
			return strconv.Quote(fmt.Sprint(v))
		},
		"toYaml": func(v any) (string, error) {
			b, err := yaml.Marshal(v)
			return strings.TrimSuffix(string(b), "\n"), err
		},
		"toJson": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"nindent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"include": func(name string, data any) (string, error) {
			if depth >= maxIncludeDepth {
				return "", fmt.Errorf("include %q: nested more than %d deep (does it include itself?)", name, maxIncludeDepth)
			}
			depth++
			defer func() { depth-- }()
			var buf bytes.Buffer
			err := root.ExecuteTemplate(&buf, name, data)
			return buf.String(), err
		},
		"upper":   strings.ToUpper,
		"lower":   strings.ToLower,
		"trim":    strings.TrimSpace,
		"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
	}
}

func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case int:
		return x == 0
	case int64:
		return x == 0
	case float64:
		return x == 0
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}
