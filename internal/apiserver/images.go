package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/images"
)

// ImageService is where images live, as the API needs it. The
// composition root gives it internal/images. Every call that reads or
// writes the registry's repositories carries what the caller may do with
// them (images.Access, from its token); the service decides which
// repositories that covers.
type ImageService interface {
	// Import loads an OCI image layout tar or docker-save tar.
	Import(ctx context.Context, a images.Access, r io.Reader) ([]v1.Image, error)
	List(ctx context.Context, a images.Access) ([]v1.Image, error)
	Pull(ctx context.Context, ref string) (v1.Image, error)
	Remove(ctx context.Context, a images.Access, ref string) error
}

// ImageRegistry is the optional ability of an ImageService backed by the
// built-in registry: where each image is, registry-only pushes, tags.
type ImageRegistry interface {
	Catalog(ctx context.Context, a images.Access) ([]v1.ImageEntry, error)
	// Push stores an archive's images in the registry without unpacking
	// them on the node.
	Push(ctx context.Context, a images.Access, r io.Reader) ([]v1.Image, error)
	// Tag makes target name the registry image source names.
	Tag(ctx context.Context, a images.Access, source, target string) (v1.Image, error)
}

// TagRequest is the body of POST /api/v1/images/tag.
type TagRequest struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// PullRequest is the body of POST /api/v1/images/pull.
type PullRequest struct {
	Ref string `json:"ref"`
}

func (s *Server) imageService() (ImageService, error) {
	if s.images == nil {
		return nil, v1.Unavailable("this server has no image service")
	}
	return s.images, nil
}

// imageAccess is what the caller of r may do with the registry's
// repositories.
func (s *Server) imageAccess(r *http.Request) (images.Access, error) {
	p, err := s.principal(r)
	if err != nil {
		return images.Access{}, err
	}
	return p.ImageAccess(), nil
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.imageService()
	if err != nil {
		return err
	}
	access, err := s.imageAccess(r)
	if err != nil {
		return err
	}
	if reg, ok := svc.(ImageRegistry); ok {
		entries, err := reg.Catalog(r.Context(), access)
		if err != nil {
			return err
		}
		if entries == nil {
			entries = []v1.ImageEntry{}
		}
		writeJSON(w, http.StatusOK, entries)
		return nil
	}
	list, err := svc.List(r.Context(), access)
	if err != nil {
		return err
	}
	if list == nil {
		list = []v1.Image{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) importImage(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.imageService()
	if err != nil {
		return err
	}
	access, err := s.imageAccess(r)
	if err != nil {
		return err
	}
	if r.ContentLength > MaxImportBytes {
		return &http.MaxBytesError{Limit: MaxImportBytes}
	}
	// The service may wrap the reader's error without %w; a read past the
	// limit is still a 413, which the MaxBytesReader's error says only if
	// it is looked for here.
	body := &limitedBody{r: http.MaxBytesReader(w, r.Body, MaxImportBytes)}
	load := svc.Import
	// ?node=false stores the images in the registry only (berth image
	// push); the default also unpacks them on the node.
	if r.URL.Query().Get("node") == "false" {
		reg, ok := svc.(ImageRegistry)
		if !ok {
			return v1.Unavailable("this server has no registry")
		}
		load = reg.Push
	}
	imported, err := load(r.Context(), access, body)
	if body.tooLarge != nil {
		return body.tooLarge
	}
	if err != nil {
		return err
	}
	if imported == nil {
		imported = []v1.Image{}
	}
	writeJSON(w, http.StatusOK, imported)
	return nil
}

type limitedBody struct {
	r        io.Reader
	tooLarge error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if _, ok := err.(*http.MaxBytesError); ok {
		b.tooLarge = err
	}
	return n, err
}

func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.imageService()
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	var req PullRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return v1.Invalid("pull body: %v; expected {\"ref\": \"IMAGE\"}", err)
	}
	if req.Ref == "" {
		return v1.FieldError("ref", "required: the image to pull, e.g. docker.io/library/nginx:latest")
	}
	img, err := svc.Pull(r.Context(), req.Ref)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, img)
	return nil
}

func (s *Server) tagImage(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.imageService()
	if err != nil {
		return err
	}
	access, err := s.imageAccess(r)
	if err != nil {
		return err
	}
	reg, ok := svc.(ImageRegistry)
	if !ok {
		return v1.Unavailable("this server has no registry")
	}
	body, err := s.readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	var req TagRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return v1.Invalid("tag body: %v; expected {\"source\": \"IMAGE\", \"target\": \"IMAGE\"}", err)
	}
	if req.Source == "" {
		return v1.FieldError("source", "required: the image to tag")
	}
	if req.Target == "" {
		return v1.FieldError("target", "required: the new name, e.g. team/api:v2")
	}
	img, err := reg.Tag(r.Context(), access, req.Source, req.Target)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, img)
	return nil
}

// removeImage answers 204: there is nothing left to show.
func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.imageService()
	if err != nil {
		return err
	}
	access, err := s.imageAccess(r)
	if err != nil {
		return err
	}
	ref := r.PathValue("ref")
	if ref == "" {
		return v1.FieldError("ref", "required: DELETE /api/v1/images/{ref}, the reference path-escaped")
	}
	if err := svc.Remove(r.Context(), access, ref); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
