package mixin

import "path"

// File is one generated file, by its path in the repository.
type File struct {
	Path string
	Data []byte
}

// Files renders every generated file for c: the two rule files under
// alerts/ and the dashboards under dashboards/.
func Files(c Config) ([]File, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var out []File
	for name, f := range map[string]RuleFile{"recording.rules.yml": RecordingRules(c), "alerts.rules.yml": Alerts(c)} {
		b, err := f.YAML()
		if err != nil {
			return nil, err
		}
		out = append(out, File{Path: path.Join("alerts", name), Data: b})
	}
	ds, err := Dashboards()
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		b, err := d.JSON()
		if err != nil {
			return nil, err
		}
		out = append(out, File{Path: path.Join("dashboards", d.File), Data: b})
	}
	return out, nil
}
