package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"berth.dev/berth/internal/atomicfile"
)

// envAllocation is one environment's share of the pool, as persisted.
type envAllocation struct {
	// Index is the subnet's position in the pool; the bridge is named after
	// it so names stay unique and short.
	Index   int    `json:"index"`
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
	Bridge  string `json:"bridge"`
}

// allocationFile is DataDir/environments.json.
type allocationFile struct {
	Pool         string                   `json:"pool"`
	Environments map[string]envAllocation `json:"environments"`
}

// record is an attachment as persisted in DataDir/attachments/<id>.json, so
// that a restarted server can find and undo what an earlier one did.
type record struct {
	ID          string `json:"id"`
	Environment string `json:"environment"`
	NetNSPath   string `json:"netnsPath"`
	IP          string `json:"ip"`
	Gateway     string `json:"gateway"`
	Bridge      string `json:"bridge"`
}

// writeJSONAtomic replaces path with v's JSON, durably: a crash leaves
// either the old or the new file, never a torn one.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

// readJSON reads path into v; ok is false when the file does not exist.
func readJSON(path string, v any) (ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

// keyedMutex serializes work per key while letting different keys proceed
// in parallel.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyedLock)
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()

	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
