package stacktest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// KubernetesAPI stands in for a cluster's API server in the one call
// Vault's Kubernetes auth method makes to it: a TokenReview of the
// service-account token a pod logs in with. It knows the tokens it
// issued (ServiceAccountToken); any other is not authenticated.
type KubernetesAPI struct {
	url    string
	key    *ecdsa.PrivateKey
	mu     sync.Mutex
	issued map[string]string // token -> system:serviceaccount:<ns>:<name>
	uids   map[string]string // token -> service account uid
}

// NewKubernetesAPI starts the stand-in, stopped when the test ends.
func NewKubernetesAPI(t testing.TB) *KubernetesAPI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	api := &KubernetesAPI{key: key, issued: map[string]string{}, uids: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
			http.NotFound(w, r)
			return
		}
		var review struct {
			Spec struct {
				Token     string   `json:"token"`
				Audiences []string `json:"audiences"`
			} `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		api.mu.Lock()
		user, ok := api.issued[review.Spec.Token]
		uid := api.uids[review.Spec.Token]
		api.mu.Unlock()
		status := map[string]any{"authenticated": false}
		if ok {
			status = map[string]any{"authenticated": true, "user": map[string]any{"username": user, "uid": uid},
				"audiences": review.Spec.Audiences}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status,
		})
	}))
	t.Cleanup(srv.Close)
	api.url = srv.URL
	return api
}

// URL is the API server's address (Vault's kubernetes_host).
func (api *KubernetesAPI) URL() string { return api.url }

// ServiceAccountToken issues a projected service-account token for
// namespace/name, as the kubelet mounts it, and returns the file it is in.
func (api *KubernetesAPI) ServiceAccountToken(t testing.TB, namespace, name string) string {
	uid := fmt.Sprintf("uid-%s-%s", namespace, name)
	token, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:" + namespace + ":" + name,
		"aud": []string{"vault"}, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]any{"name": name, "uid": uid},
		},
	}).SignedString(api.key)
	require.NoError(t, err)
	api.mu.Lock()
	api.issued[token] = "system:serviceaccount:" + namespace + ":" + name
	api.uids[token] = uid
	api.mu.Unlock()
	file := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(file, []byte(token), 0o600))
	return file
}
