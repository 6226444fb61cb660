package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// The helpers below move api/v1 objects through a Store as JSON. What a
// caller sees in metadata.resourceVersion is always the record's revision;
// the stored JSON leaves it out, so it can never disagree with the record.

// KeyOf is where obj is stored: its kind, environment and name. Environments
// are cluster-scoped, so their key has no environment.
func KeyOf(obj v1.Object) Key {
	md := obj.GetMetadata()
	k := Key{Kind: obj.GetTypeMeta().Kind, Environment: md.Environment, Name: md.Name}
	if k.Kind == v1.KindEnvironment {
		k.Environment = ""
	}
	return k
}

// Decode fills obj, which it zeroes first, from rec.
func Decode(rec Record, obj v1.Object) error {
	if v := reflect.ValueOf(obj); v.Kind() == reflect.Pointer && !v.IsNil() {
		v.Elem().SetZero()
	}
	if err := json.Unmarshal(rec.Value, obj); err != nil {
		return fmt.Errorf("decode %s at revision %d: %w", rec.Key, rec.Revision, err)
	}
	obj.GetMetadata().ResourceVersion = rec.Revision
	return nil
}

// Get reads the object at key into obj.
func Get(ctx context.Context, s Store, key Key, obj v1.Object) error {
	rec, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	return Decode(rec, obj)
}

// List returns the objects of kind in environment ("" for all), in key
// order, and the store revision to watch from.
//
//	svcs, rev, err := store.List[v1.Service](ctx, s, v1.KindService, "default")
func List[T any, PT interface {
	*T
	v1.Object
}](ctx context.Context, s Store, kind, environment string) ([]PT, uint64, error) {
	recs, rev, err := s.List(ctx, kind, environment)
	if err != nil {
		return nil, 0, err
	}
	objs := make([]PT, len(recs))
	for i, rec := range recs {
		objs[i] = PT(new(T))
		if err := Decode(rec, objs[i]); err != nil {
			return nil, 0, err
		}
	}
	return objs, rev, nil
}

// Create stores a new object. It stamps a fresh UID and creation time,
// generation 1 when unset, and the resulting resourceVersion into obj.
func Create(ctx context.Context, s Store, obj v1.Object) error {
	md := obj.GetMetadata()
	uid, created, gen := md.UID, md.CreationTimestamp, md.Generation
	md.UID = newUID()
	md.CreationTimestamp = time.Now().UTC().Truncate(time.Second)
	if md.Generation == 0 {
		md.Generation = 1
	}
	rev, err := put(ctx, obj, func(key Key, value []byte) (uint64, error) {
		return s.Create(ctx, key, value)
	})
	if err != nil {
		// Leave obj as the caller gave it, so a retry starts clean.
		md.UID, md.CreationTimestamp, md.Generation = uid, created, gen
		return err
	}
	md.ResourceVersion = rev
	return nil
}

// Update replaces the stored object, only if it is still at
// obj's resourceVersion unless that is 0, and sets the new one into obj.
func Update(ctx context.Context, s Store, obj v1.Object) error {
	md := obj.GetMetadata()
	expect := md.ResourceVersion
	rev, err := put(ctx, obj, func(key Key, value []byte) (uint64, error) {
		return s.Update(ctx, key, value, expect)
	})
	if err != nil {
		return err
	}
	md.ResourceVersion = rev
	return nil
}

// Delete removes obj, only if it is still at its resourceVersion unless
// that is 0.
func Delete(ctx context.Context, s Store, obj v1.Object) error {
	return s.Delete(ctx, KeyOf(obj), obj.GetMetadata().ResourceVersion)
}

// CreateOp is the transaction op that creates obj, stamped as Create
// stamps it (UID, creation time, generation 1 when unset).
func CreateOp(obj v1.Object) (Op, error) {
	md := obj.GetMetadata()
	md.UID = newUID()
	md.CreationTimestamp = time.Now().UTC().Truncate(time.Second)
	if md.Generation == 0 {
		md.Generation = 1
	}
	value, err := encode(obj)
	return Op{Type: OpCreate, Key: KeyOf(obj), Value: value}, err
}

// UpdateOp is the transaction op that replaces obj if it is still at its
// resourceVersion (0: any).
func UpdateOp(obj v1.Object) (Op, error) {
	value, err := encode(obj)
	return Op{Type: OpUpdate, Key: KeyOf(obj), Value: value, ExpectRev: obj.GetMetadata().ResourceVersion}, err
}

// DeleteOp is the transaction op that deletes obj if it is still at its
// resourceVersion (0: any).
func DeleteOp(obj v1.Object) Op {
	return Op{Type: OpDelete, Key: KeyOf(obj), ExpectRev: obj.GetMetadata().ResourceVersion}
}

// encode is obj as stored: without its resourceVersion, which is the
// record's.
func encode(obj v1.Object) ([]byte, error) {
	md := obj.GetMetadata()
	rv := md.ResourceVersion
	md.ResourceVersion = 0
	value, err := json.Marshal(obj)
	md.ResourceVersion = rv
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", KeyOf(obj), err)
	}
	return value, nil
}

func put(ctx context.Context, obj v1.Object, write func(Key, []byte) (uint64, error)) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	value, err := encode(obj)
	if err != nil {
		return 0, err
	}
	return write(KeyOf(obj), value)
}

// newUID is a random (version 4) UUID.
func newUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
