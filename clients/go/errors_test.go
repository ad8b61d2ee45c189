package unstuck

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

// Every problem type of the server's /openapi.json has its own sentinel, matched by
// errors.Is on an *APIError of that type together with its families; no two types share one.
func TestEveryProblemTypeHasItsSentinel(t *testing.T) {
	raw, err := testStack.client("").OpenAPI(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas struct {
				Problem struct {
					Properties struct {
						Type struct {
							Enum []string `json:"enum"`
						} `json:"type"`
					} `json:"properties"`
				} `json:"Problem"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	types := doc.Components.Schemas.Problem.Properties.Type.Enum
	if len(types) < 30 {
		t.Fatalf("only %d problem types in /openapi.json: %v", len(types), types)
	}
	owner := map[error]string{}
	for _, typ := range types {
		e := problemError(500, http.Header{}, []byte(`{"type":"`+typ+`","title":"t","status":500}`))
		sentinels, ok := bySlug[e.Slug()]
		if !ok {
			t.Errorf("%s has no sentinel", typ)
			continue
		}
		own := sentinels[0]
		if other, taken := owner[own]; taken {
			t.Errorf("%s and %s share the sentinel %v", typ, other, own)
		}
		owner[own] = typ
		for _, s := range sentinels {
			if !errors.Is(e, s) {
				t.Errorf("%s is not errors.Is %v", typ, s)
			}
		}
	}
	// A few families by name: the sentinel of the type and the one of its family both match.
	for typ, want := range map[string][]error{
		"/problems/no-route":           {ErrNoRoute, ErrNotFound},
		"/problems/body-too-large":     {ErrBodyTooLarge, ErrTooLarge},
		"/problems/saturated":          {ErrSaturated, ErrUnavailable, ErrServer},
		"/problems/internal":           {ErrInternal, ErrServer},
		"/problems/method-not-allowed": {ErrMethodNotAllowed},
		"/problems/already-terminal":   {ErrAlreadyTerminal, ErrTerminal, ErrConflict},
	} {
		e := problemError(500, http.Header{}, []byte(`{"type":"`+typ+`"}`))
		for _, s := range want {
			if !errors.Is(e, s) {
				t.Errorf("%s is not errors.Is %v", typ, s)
			}
		}
	}
}
