package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/accesskeys"
	"berth.dev/berth/internal/kv"
	"berth.dev/berth/internal/objects"
	"berth.dev/berth/internal/s3api"
	"berth.dev/berth/internal/secrets"
	"berth.dev/berth/internal/sigv4"
	"berth.dev/berth/internal/store"
)

// stateRegion is the region instances are told (AWS_REGION): SDKs need
// one, and every bucket answers for it.
const stateRegion = "us-east-1"

// state is the environments' object and key-value stores and the access
// keys that reach them (docs/state.md).
type state struct {
	objects *objects.Store
	kv      *kv.Store
	kvHTTP  *kv.Handler
	keys    *accesskeys.Keys
}

// buildState opens the object store (DATA/objects), the key-value store
// (in the queue's JetStream) and the access keys, and serves them on the
// gateway at s3.ENV.DOMAIN and kv.ENV.DOMAIN.
func (s *Server) buildState() error {
	cfg := s.cfg
	st := &state{}
	var err error
	st.objects, err = objects.Open(objects.Config{
		Dir: filepath.Join(cfg.DataDir, "objects"), Limits: s.objectLimits,
		Logger: s.log.With("part", "objects"),
	})
	if err != nil {
		return err
	}
	s.addPart("objects", st.objects.Run)
	// The data dir's secrets key seals the token keys' secrets and, through
	// a derived key, makes the instances' key pairs.
	key, err := secrets.LoadOrCreateKey(filepath.Join(cfg.DataDir, "secrets.key"))
	if err != nil {
		return fmt.Errorf("secrets key: %w", err)
	}
	box, err := secrets.NewBox(key)
	if err != nil {
		return fmt.Errorf("secrets key: %w", err)
	}
	seed := hmac.New(sha256.New, key)
	seed.Write([]byte("berth instance access keys"))
	st.keys = accesskeys.New(s.store, box, seed.Sum(nil))

	st.kv = kv.New(kv.Config{JetStream: s.queue.JetStream(), Logger: s.log.With("part", "kv")})
	st.kvHTTP = kv.NewHandler(st.kv, func(r *http.Request) (kv.Identity, error) {
		p, err := s.auth.StateCaller(st.keys)(r)
		if err != nil {
			return nil, err
		}
		return p, nil
	}, s.log.With("part", "kv"))

	s3metrics := s3api.NewMetrics()
	api := s3api.New(s3api.Config{
		Store: st.objects, Region: stateRegion, Observer: s3metrics,
		Keys: func(ctx context.Context, id string) (string, s3api.Identity, error) {
			f, err := st.keys.Lookup(ctx, id)
			if err != nil {
				return "", nil, err
			}
			p, err := s.auth.KeyPrincipal(ctx, f)
			if v1.KindOf(err) == v1.ErrUnauthorized {
				return "", nil, fmt.Errorf("%w: %v", sigv4.ErrUnknownKey, err)
			}
			if err != nil {
				return "", nil, err
			}
			return f.Secret, p, nil
		},
		Logger: s.log.With("part", "s3"),
	})
	s.gateway.SetPlatform("s3", api)
	s.gateway.SetPlatform("kv", st.kvHTTP)
	if err := s.metrics.Register(st.objects.Collector(), s3metrics); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	s.state = st
	return nil
}

// objectLimits is env's quota of object store bytes and objects.
func (s *Server) objectLimits(env string) objects.Limits {
	var e v1.Environment
	if err := store.Get(context.Background(), s.store, store.Key{Kind: v1.KindEnvironment, Name: env}, &e); err != nil || e.Spec.Quota == nil {
		return objects.Limits{}
	}
	l := objects.Limits{Objects: e.Spec.Quota.Objects}
	if q := e.Spec.Quota.ObjectStorage; q != "" {
		if b, err := v1.ParseMemory(q); err == nil {
			l.Bytes = b
		}
	}
	return l
}

// instanceEnv is what every instance of env is told of its state: the S3
// endpoint and key pair an AWS SDK with default settings picks up, and
// the KV endpoint (the same key pair as HTTP Basic credentials). The
// names resolve, on env's bridge, to env's own gateway.
func (s *Server) instanceEnv(ctx context.Context, env string) ([]string, error) {
	if s.state == nil {
		return nil, errors.New("the state stores are not built")
	}
	id, secret, err := s.state.keys.ForInstance(ctx, env)
	if err != nil {
		return nil, err
	}
	host := env + "." + s.cfg.Domain
	return []string{
		"AWS_ENDPOINT_URL_S3=http://s3." + host,
		"AWS_ACCESS_KEY_ID=" + id,
		"AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_REGION=" + stateRegion,
		"AWS_DEFAULT_REGION=" + stateRegion,
		"BERTH_KV_URL=http://kv." + host,
		"AWS_ENDPOINT_URL_SFN=http://states." + host,
		"AWS_ENDPOINT_URL_LAMBDA=http://lambda." + host,
	}, nil
}

// close closes the object store's index (after the parts stopped).
func (st *state) close() {
	if st != nil && st.objects != nil {
		st.objects.Close()
	}
}

// kvAPI is the key-value store as the API server serves it.
type kvAPI struct{ st *state }

func (k kvAPI) Serve(w http.ResponseWriter, r *http.Request, env, key string) error {
	return k.st.kvHTTP.Serve(w, r, env, key)
}

func (k kvAPI) Usage(ctx context.Context, env string) (uint64, uint64, error) {
	return k.st.kv.Usage(ctx, env)
}

func (k kvAPI) DeleteEnvironment(ctx context.Context, env string) error {
	return k.st.kv.DeleteEnvironment(ctx, env)
}
