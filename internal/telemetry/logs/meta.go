package logs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Meta is what the log of an instance says about it beside its lines: the
// revision it ran, so that `logs --revision` still finds an instance after
// it is gone from the store. It is kept in INSTANCE.meta next to the logs.
type Meta struct {
	Revision  int64  `json:"revision"`
	OwnerKind string `json:"ownerKind,omitempty"`
}

// MetaPath is the sidecar of an instance's logs.
func MetaPath(root, env, owner, instance string) string {
	return filepath.Join(Dir(root, env, owner), instance+".meta")
}

// WriteMeta writes an instance's sidecar, creating the directory. The
// agent calls it before the instance's first line; the janitor writes it
// for live instances that lack one.
func WriteMeta(root, env, owner, instance string, m Meta) error {
	for _, n := range []string{env, owner, instance} {
		if !safeName(n) {
			return fmt.Errorf("log meta: %q is not a valid name", n)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	path := MetaPath(root, env, owner, instance)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("log meta: %w", err)
	}
	// Written whole then renamed: a reader never sees half of it. A temp
	// name of its own, since the agent and the janitor may both write it.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("log meta: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o640)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("log meta: %w", err)
	}
	return nil
}

// ReadMeta reads the sidecar of instance in an owner's log directory.
func ReadMeta(dir, instance string) (Meta, error) {
	var m Meta
	b, err := os.ReadFile(filepath.Join(dir, instance+".meta"))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("log meta of %s: %w", instance, err)
	}
	return m, nil
}
