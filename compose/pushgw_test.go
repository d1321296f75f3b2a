package compose

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bitville/bitville-apm/pushgw"
)

// TestPushToken checks the push's credentials: pushgw reads
// compose/pushgw/tokens.yml, the agent reads compose/pushgw/shop.token,
// and pushgw's own parser takes the one as authenticating the other as
// the project the PHP agent reports (BITVILLE_APM_PROJECT), so the
// authenticated project the gateway sets is the one already there.
func TestPushToken(t *testing.T) {
	p := loadProject(t)
	agent, gw, shop := service(t, p, "agent"), service(t, p, "pushgw"), service(t, p, "shop")
	dir := filepath.Join(composeDir(t), "pushgw")

	tokensFile := locate(gw, flagValue(gw.Command, "pushgw.tokens-file"))
	if want := filepath.Join(dir, "tokens.yml"); tokensFile.Where != want {
		t.Fatalf("pushgw --pushgw.tokens-file is %s %s; want %s mounted there", tokensFile.Kind, tokensFile.Where, want)
	}
	tokenFile := locate(agent, flagValue(agent.Command, "push.token-file"))
	if want := filepath.Join(dir, "shop.token"); tokenFile.Where != want {
		t.Fatalf("agent --push.token-file is %s %s; want %s mounted there", tokenFile.Kind, tokenFile.Where, want)
	}

	tokens, err := pushgw.ParseTokens(readFile(t, tokensFile.Where))
	if err != nil {
		t.Fatalf("pushgw/tokens.yml: %v", err)
	}
	// The agent sends the first line of its file, trimmed.
	token, _, _ := strings.Cut(string(readFile(t, tokenFile.Where)), "\n")
	project, ok := tokens.Project(strings.TrimSpace(token))
	want, _ := envValue(shop, "BITVILLE_APM_PROJECT")
	if !ok || project != want {
		t.Errorf("pushgw/tokens.yml authenticates the token of pushgw/shop.token as project %q (%v); want %q, the shop's BITVILLE_APM_PROJECT", project, ok, want)
	}
	if got := tokens.Projects(); len(got) != 1 {
		t.Errorf("pushgw/tokens.yml holds the projects %v; want only %q", got, want)
	}
}
