package cli

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

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

// decodeManifests decodes one file, keeping which document (and List
// item) each object came from so later validation errors can point at it.
func decodeManifests(file string, data []byte) ([]manifest, error) {
	docs, err := v1.DecodeDocuments(file, data)
	if err != nil {
		return nil, err
	}
	ms := make([]manifest, len(docs))
	for i, d := range docs {
		ms[i] = manifest{obj: d.Object, file: file, doc: d.Index, path: d.Path}
	}
	return ms, nil
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
