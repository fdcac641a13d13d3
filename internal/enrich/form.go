package enrich

// FormModel models a form event enriched with its form definition (the
// Typeform Create API's GET /forms/{id}) into the seed's two tables. The
// document is {"event": the event's payload, "form": the definition,
// "retrieved_timestamp": when it was fetched}.
var FormModel = Model{Tables: []TableModel{
	{
		Name: "form",
		From: "form",
		Columns: []string{"id", "type", "title", "settings_language", "settings_progress_bar",
			"settings_show_time_to_complete", "settings_show_number_of_submissions",
			"settings_redirect_after_submit_url", "retrieved_timestamp", "event_happened_at", "event_type"},
		Include: []Include{
			{Path: "retrieved_timestamp", As: "retrieved_timestamp"},
			{Path: "event.event_happened_at", As: "event_happened_at"},
			{Path: "event.event_type", As: "event_type"},
		},
	},
	{
		Name:         "form_field",
		From:         "form.fields",
		Nested:       "properties.fields", // a group's or a matrix's own fields
		ParentColumn: "parent_id",
		Rename:       map[string]string{"ref": "reference"},
		Columns: []string{"id", "title", "reference", "validations_required", "type", "attachment_type",
			"attachment_href", "properties_default_country_code"},
		Rest:         true,
		Parent:       "form",
		ParentPrefix: "form_",
	},
}}
