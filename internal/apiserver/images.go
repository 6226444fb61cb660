package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"

	v1 "berth.dev/berth/api/v1"
)

// ImageService is the node's image store as the API needs it. The
// composition root implements it over the runtime driver.
type ImageService interface {
	// Import loads an OCI image layout tar or docker-save tar.
	Import(ctx context.Context, r io.Reader) ([]v1.Image, error)
	List(ctx context.Context) ([]v1.Image, error)
	Pull(ctx context.Context, ref string) (v1.Image, error)
	Remove(ctx context.Context, ref string) error
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

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) error {
	images, err := s.imageService()
	if err != nil {
		return err
	}
	list, err := images.List(r.Context())
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
	images, err := s.imageService()
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
	imported, err := images.Import(r.Context(), body)
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
	images, err := s.imageService()
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
	img, err := images.Pull(r.Context(), req.Ref)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, img)
	return nil
}

// removeImage answers 204: there is nothing left to show.
func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) error {
	images, err := s.imageService()
	if err != nil {
		return err
	}
	ref := r.PathValue("ref")
	if ref == "" {
		return v1.FieldError("ref", "required: DELETE /api/v1/images/{ref}, the reference path-escaped")
	}
	if err := images.Remove(r.Context(), ref); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
