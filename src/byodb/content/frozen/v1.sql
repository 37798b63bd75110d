CREATE EXTENSION IF NOT EXISTS vector;

CREATE SCHEMA IF NOT EXISTS byodb;

CREATE TABLE byodb.activity_events (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	event_type TEXT NOT NULL,
	subject_type TEXT,
	subject_id UUID,
	data JSONB DEFAULT '{}'::jsonb NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_activity_events PRIMARY KEY (id)
);

CREATE INDEX ix_activity_events_user_created ON byodb.activity_events (user_id, created_at);

CREATE INDEX ix_activity_events_user_event_type ON byodb.activity_events (user_id, event_type);

CREATE TABLE byodb.byodb_meta (
	id SMALLINT NOT NULL,
	schema_version INTEGER NOT NULL,
	deployed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	instance_id UUID NOT NULL,
	CONSTRAINT pk_byodb_meta PRIMARY KEY (id),
	CONSTRAINT ck_byodb_meta_single_row CHECK (id = 1),
	CONSTRAINT ck_byodb_meta_schema_version_positive CHECK (schema_version >= 1)
);

CREATE TABLE byodb.conversations (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	title TEXT,
	model TEXT,
	system_prompt TEXT,
	is_archived BOOLEAN DEFAULT false NOT NULL,
	is_pinned BOOLEAN DEFAULT false NOT NULL,
	last_message_at TIMESTAMP WITH TIME ZONE,
	message_count INTEGER DEFAULT 0 NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	title_tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', coalesce(title, ''))) STORED,
	CONSTRAINT pk_conversations PRIMARY KEY (id)
);

CREATE INDEX ix_conversations_search_title ON byodb.conversations USING gin (title_tsv);

CREATE INDEX ix_conversations_user ON byodb.conversations (user_id);

CREATE INDEX ix_conversations_user_archived ON byodb.conversations (user_id, is_archived);

CREATE INDEX ix_conversations_user_last_message ON byodb.conversations (user_id, last_message_at);

CREATE INDEX ix_conversations_user_pinned ON byodb.conversations (user_id, is_pinned);

CREATE TABLE byodb.design_templates (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	name TEXT NOT NULL,
	config JSONB NOT NULL,
	is_default BOOLEAN DEFAULT false NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_design_templates PRIMARY KEY (id)
);

CREATE INDEX ix_design_templates_user ON byodb.design_templates (user_id);

CREATE TABLE byodb.files (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	filename TEXT NOT NULL,
	mime_type TEXT NOT NULL,
	size BIGINT NOT NULL,
	url TEXT,
	status TEXT,
	error TEXT,
	metadata JSONB,
	content BYTEA,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_files PRIMARY KEY (id),
	CONSTRAINT ck_files_status CHECK (status IN ('uploading', 'processing', 'ready', 'error')),
	CONSTRAINT ck_files_size_not_negative CHECK (size >= 0)
);

CREATE INDEX ix_files_user ON byodb.files (user_id);

CREATE INDEX ix_files_user_status ON byodb.files (user_id, status);

CREATE TABLE byodb.notes (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	title TEXT NOT NULL,
	content TEXT NOT NULL,
	is_pinned BOOLEAN DEFAULT false NOT NULL,
	is_archived BOOLEAN DEFAULT false NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	content_tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', coalesce(title, '') || ' ' || coalesce(content, ''))) STORED,
	CONSTRAINT pk_notes PRIMARY KEY (id)
);

CREATE INDEX ix_notes_search_content ON byodb.notes USING gin (content_tsv);

CREATE INDEX ix_notes_user ON byodb.notes (user_id);

CREATE INDEX ix_notes_user_archived ON byodb.notes (user_id, is_archived);

CREATE INDEX ix_notes_user_pinned ON byodb.notes (user_id, is_pinned);

CREATE TABLE byodb.projects (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	name TEXT NOT NULL,
	description TEXT,
	color TEXT,
	icon TEXT,
	is_archived BOOLEAN DEFAULT false NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_projects PRIMARY KEY (id)
);

CREATE INDEX ix_projects_user ON byodb.projects (user_id);

CREATE INDEX ix_projects_user_archived ON byodb.projects (user_id, is_archived);

CREATE TABLE byodb.tags (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	name TEXT NOT NULL,
	color TEXT,
	scope TEXT NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_tags PRIMARY KEY (id),
	CONSTRAINT ck_tags_scope CHECK (scope IN ('user', 'global'))
);

CREATE INDEX ix_tags_name ON byodb.tags (name);

CREATE INDEX ix_tags_user ON byodb.tags (user_id);

CREATE TABLE byodb.tts_cache (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	hash TEXT NOT NULL,
	audio BYTEA NOT NULL,
	text TEXT NOT NULL,
	voice TEXT NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_tts_cache PRIMARY KEY (id)
);

CREATE INDEX ix_tts_cache_expires ON byodb.tts_cache (expires_at);

CREATE INDEX ix_tts_cache_hash ON byodb.tts_cache (hash);

CREATE INDEX ix_tts_cache_user ON byodb.tts_cache (user_id);

CREATE TABLE byodb.usage_records (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	date DATE NOT NULL,
	model TEXT NOT NULL,
	input_tokens BIGINT DEFAULT 0 NOT NULL,
	output_tokens BIGINT DEFAULT 0 NOT NULL,
	cost NUMERIC DEFAULT 0 NOT NULL,
	request_count INTEGER DEFAULT 0 NOT NULL,
	CONSTRAINT pk_usage_records PRIMARY KEY (id),
	CONSTRAINT uq_usage_records_user_id_date_model UNIQUE (user_id, date, model)
);

CREATE INDEX ix_usage_records_user ON byodb.usage_records (user_id);

CREATE INDEX ix_usage_records_user_date ON byodb.usage_records (user_id, date);

CREATE INDEX ix_usage_records_user_model ON byodb.usage_records (user_id, model);

CREATE TABLE byodb.conversation_participants (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	conversation_id UUID NOT NULL,
	member_id TEXT NOT NULL,
	role TEXT NOT NULL,
	joined_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_conversation_participants PRIMARY KEY (id),
	CONSTRAINT ck_conversation_participants_role CHECK (role IN ('owner', 'collaborator', 'viewer')),
	CONSTRAINT uq_conversation_participants_conversation_id_member_id UNIQUE (conversation_id, member_id),
	CONSTRAINT fk_conversation_participants_conversation_id FOREIGN KEY(conversation_id) REFERENCES byodb.conversations (id) ON DELETE CASCADE
);

CREATE INDEX ix_conversation_participants_conversation ON byodb.conversation_participants (conversation_id);

CREATE INDEX ix_conversation_participants_member ON byodb.conversation_participants (member_id);

CREATE INDEX ix_conversation_participants_user ON byodb.conversation_participants (user_id);

CREATE TABLE byodb.conversation_tags (
	id UUID NOT NULL,
	conversation_id UUID NOT NULL,
	tag_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_conversation_tags PRIMARY KEY (id),
	CONSTRAINT uq_conversation_tags_conversation_id_tag_id UNIQUE (conversation_id, tag_id),
	CONSTRAINT fk_conversation_tags_conversation_id FOREIGN KEY(conversation_id) REFERENCES byodb.conversations (id) ON DELETE CASCADE,
	CONSTRAINT fk_conversation_tags_tag_id FOREIGN KEY(tag_id) REFERENCES byodb.tags (id) ON DELETE CASCADE
);

CREATE INDEX ix_conversation_tags_conversation ON byodb.conversation_tags (conversation_id);

CREATE INDEX ix_conversation_tags_tag ON byodb.conversation_tags (tag_id);

CREATE INDEX ix_conversation_tags_user ON byodb.conversation_tags (user_id);

CREATE TABLE byodb.file_chunks (
	id UUID NOT NULL,
	file_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	chunk_index INTEGER NOT NULL,
	content TEXT NOT NULL,
	embedding VECTOR(1536),
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_file_chunks PRIMARY KEY (id),
	CONSTRAINT uq_file_chunks_file_id_chunk_index UNIQUE (file_id, chunk_index),
	CONSTRAINT fk_file_chunks_file_id FOREIGN KEY(file_id) REFERENCES byodb.files (id) ON DELETE CASCADE
);

CREATE INDEX ix_file_chunks_embedding ON byodb.file_chunks USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

CREATE INDEX ix_file_chunks_file ON byodb.file_chunks (file_id);

CREATE INDEX ix_file_chunks_user ON byodb.file_chunks (user_id);

CREATE TABLE byodb.messages (
	id UUID NOT NULL,
	conversation_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	role TEXT NOT NULL,
	content TEXT NOT NULL,
	model TEXT,
	status TEXT,
	partial_content TEXT,
	error TEXT,
	generation_started_at TIMESTAMP WITH TIME ZONE,
	generation_completed_at TIMESTAMP WITH TIME ZONE,
	input_tokens INTEGER,
	output_tokens INTEGER,
	cost NUMERIC,
	parent_message_id UUID,
	branch_index INTEGER DEFAULT 0 NOT NULL,
	metadata JSONB,
	embedding VECTOR(1536),
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	content_tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', coalesce(content, ''))) STORED,
	CONSTRAINT pk_messages PRIMARY KEY (id),
	CONSTRAINT ck_messages_role CHECK (role IN ('user', 'assistant', 'system')),
	CONSTRAINT ck_messages_status CHECK (status IN ('pending', 'generating', 'complete', 'error', 'stopped')),
	CONSTRAINT fk_messages_conversation_id FOREIGN KEY(conversation_id) REFERENCES byodb.conversations (id) ON DELETE CASCADE,
	CONSTRAINT fk_messages_parent_message_id FOREIGN KEY(parent_message_id) REFERENCES byodb.messages (id) ON DELETE SET NULL
);

CREATE INDEX ix_messages_conversation ON byodb.messages (conversation_id);

CREATE INDEX ix_messages_conversation_created ON byodb.messages (conversation_id, created_at);

CREATE INDEX ix_messages_embedding ON byodb.messages USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

CREATE INDEX ix_messages_parent ON byodb.messages (parent_message_id);

CREATE INDEX ix_messages_search_content ON byodb.messages USING gin (content_tsv);

CREATE INDEX ix_messages_status ON byodb.messages (status);

CREATE INDEX ix_messages_user ON byodb.messages (user_id);

CREATE TABLE byodb.note_tags (
	id UUID NOT NULL,
	note_id UUID NOT NULL,
	tag_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_note_tags PRIMARY KEY (id),
	CONSTRAINT uq_note_tags_note_id_tag_id UNIQUE (note_id, tag_id),
	CONSTRAINT fk_note_tags_note_id FOREIGN KEY(note_id) REFERENCES byodb.notes (id) ON DELETE CASCADE,
	CONSTRAINT fk_note_tags_tag_id FOREIGN KEY(tag_id) REFERENCES byodb.tags (id) ON DELETE CASCADE
);

CREATE INDEX ix_note_tags_note ON byodb.note_tags (note_id);

CREATE INDEX ix_note_tags_tag ON byodb.note_tags (tag_id);

CREATE INDEX ix_note_tags_user ON byodb.note_tags (user_id);

CREATE TABLE byodb.presentations (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	title TEXT NOT NULL,
	description TEXT,
	theme TEXT,
	status TEXT NOT NULL,
	source_conversation_id UUID,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_presentations PRIMARY KEY (id),
	CONSTRAINT ck_presentations_status CHECK (status IN ('draft', 'ready', 'presenting')),
	CONSTRAINT fk_presentations_source_conversation_id FOREIGN KEY(source_conversation_id) REFERENCES byodb.conversations (id) ON DELETE SET NULL
);

CREATE INDEX ix_presentations_source_conversation ON byodb.presentations (source_conversation_id);

CREATE INDEX ix_presentations_user ON byodb.presentations (user_id);

CREATE INDEX ix_presentations_user_status ON byodb.presentations (user_id, status);

CREATE TABLE byodb.project_conversations (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	project_id UUID NOT NULL,
	conversation_id UUID NOT NULL,
	added_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	added_by TEXT NOT NULL,
	CONSTRAINT pk_project_conversations PRIMARY KEY (id),
	CONSTRAINT uq_project_conversations_project_id_conversation_id UNIQUE (project_id, conversation_id),
	CONSTRAINT fk_project_conversations_project_id FOREIGN KEY(project_id) REFERENCES byodb.projects (id) ON DELETE CASCADE,
	CONSTRAINT fk_project_conversations_conversation_id FOREIGN KEY(conversation_id) REFERENCES byodb.conversations (id) ON DELETE CASCADE
);

CREATE INDEX ix_project_conversations_conversation ON byodb.project_conversations (conversation_id);

CREATE INDEX ix_project_conversations_project ON byodb.project_conversations (project_id);

CREATE INDEX ix_project_conversations_user ON byodb.project_conversations (user_id);

CREATE TABLE byodb.project_files (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	project_id UUID NOT NULL,
	file_id UUID NOT NULL,
	added_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	added_by TEXT NOT NULL,
	CONSTRAINT pk_project_files PRIMARY KEY (id),
	CONSTRAINT uq_project_files_project_id_file_id UNIQUE (project_id, file_id),
	CONSTRAINT fk_project_files_project_id FOREIGN KEY(project_id) REFERENCES byodb.projects (id) ON DELETE CASCADE,
	CONSTRAINT fk_project_files_file_id FOREIGN KEY(file_id) REFERENCES byodb.files (id) ON DELETE CASCADE
);

CREATE INDEX ix_project_files_file ON byodb.project_files (file_id);

CREATE INDEX ix_project_files_project ON byodb.project_files (project_id);

CREATE INDEX ix_project_files_user ON byodb.project_files (user_id);

CREATE TABLE byodb.project_notes (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	project_id UUID NOT NULL,
	note_id UUID NOT NULL,
	added_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	added_by TEXT NOT NULL,
	CONSTRAINT pk_project_notes PRIMARY KEY (id),
	CONSTRAINT uq_project_notes_project_id_note_id UNIQUE (project_id, note_id),
	CONSTRAINT fk_project_notes_project_id FOREIGN KEY(project_id) REFERENCES byodb.projects (id) ON DELETE CASCADE,
	CONSTRAINT fk_project_notes_note_id FOREIGN KEY(note_id) REFERENCES byodb.notes (id) ON DELETE CASCADE
);

CREATE INDEX ix_project_notes_note ON byodb.project_notes (note_id);

CREATE INDEX ix_project_notes_project ON byodb.project_notes (project_id);

CREATE INDEX ix_project_notes_user ON byodb.project_notes (user_id);

CREATE TABLE byodb.attachments (
	id UUID NOT NULL,
	message_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	filename TEXT NOT NULL,
	mime_type TEXT NOT NULL,
	size BIGINT NOT NULL,
	url TEXT,
	content BYTEA,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_attachments PRIMARY KEY (id),
	CONSTRAINT ck_attachments_size_not_negative CHECK (size >= 0),
	CONSTRAINT fk_attachments_message_id FOREIGN KEY(message_id) REFERENCES byodb.messages (id) ON DELETE CASCADE
);

CREATE INDEX ix_attachments_message ON byodb.attachments (message_id);

CREATE INDEX ix_attachments_user ON byodb.attachments (user_id);

CREATE TABLE byodb.bookmarks (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	message_id UUID NOT NULL,
	conversation_id UUID NOT NULL,
	note TEXT,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_bookmarks PRIMARY KEY (id),
	CONSTRAINT fk_bookmarks_message_id FOREIGN KEY(message_id) REFERENCES byodb.messages (id) ON DELETE CASCADE,
	CONSTRAINT fk_bookmarks_conversation_id FOREIGN KEY(conversation_id) REFERENCES byodb.conversations (id) ON DELETE CASCADE
);

CREATE INDEX ix_bookmarks_conversation ON byodb.bookmarks (conversation_id);

CREATE INDEX ix_bookmarks_message ON byodb.bookmarks (message_id);

CREATE INDEX ix_bookmarks_user ON byodb.bookmarks (user_id);

CREATE TABLE byodb.memories (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	content TEXT NOT NULL,
	category TEXT,
	source TEXT,
	source_conversation_id UUID,
	source_message_id UUID,
	importance DOUBLE PRECISION,
	embedding VECTOR(1536),
	is_active BOOLEAN DEFAULT true NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	content_tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', coalesce(content, ''))) STORED,
	CONSTRAINT pk_memories PRIMARY KEY (id),
	CONSTRAINT ck_memories_source CHECK (source IN ('extracted', 'manual', 'imported')),
	CONSTRAINT ck_memories_importance_range CHECK (importance BETWEEN 0 AND 1),
	CONSTRAINT fk_memories_source_conversation_id FOREIGN KEY(source_conversation_id) REFERENCES byodb.conversations (id) ON DELETE SET NULL,
	CONSTRAINT fk_memories_source_message_id FOREIGN KEY(source_message_id) REFERENCES byodb.messages (id) ON DELETE SET NULL
);

CREATE INDEX ix_memories_embedding ON byodb.memories USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

CREATE INDEX ix_memories_search_content ON byodb.memories USING gin (content_tsv);

CREATE INDEX ix_memories_source_conversation ON byodb.memories (source_conversation_id);

CREATE INDEX ix_memories_source_message ON byodb.memories (source_message_id);

CREATE INDEX ix_memories_user ON byodb.memories (user_id);

CREATE INDEX ix_memories_user_active ON byodb.memories (user_id, is_active);

CREATE INDEX ix_memories_user_category ON byodb.memories (user_id, category);

CREATE TABLE byodb.outline_items (
	id UUID NOT NULL,
	presentation_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	position INTEGER NOT NULL,
	title TEXT NOT NULL,
	content TEXT,
	is_completed BOOLEAN DEFAULT false NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_outline_items PRIMARY KEY (id),
	CONSTRAINT fk_outline_items_presentation_id FOREIGN KEY(presentation_id) REFERENCES byodb.presentations (id) ON DELETE CASCADE
);

CREATE INDEX ix_outline_items_presentation ON byodb.outline_items (presentation_id);

CREATE INDEX ix_outline_items_user ON byodb.outline_items (user_id);

CREATE TABLE byodb.presentation_sessions (
	id UUID NOT NULL,
	presentation_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	current_slide INTEGER DEFAULT 0 NOT NULL,
	is_active BOOLEAN DEFAULT false NOT NULL,
	started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	ended_at TIMESTAMP WITH TIME ZONE,
	CONSTRAINT pk_presentation_sessions PRIMARY KEY (id),
	CONSTRAINT fk_presentation_sessions_presentation_id FOREIGN KEY(presentation_id) REFERENCES byodb.presentations (id) ON DELETE CASCADE
);

CREATE INDEX ix_presentation_sessions_presentation ON byodb.presentation_sessions (presentation_id);

CREATE INDEX ix_presentation_sessions_user_active ON byodb.presentation_sessions (user_id, is_active);

CREATE TABLE byodb.slides (
	id UUID NOT NULL,
	presentation_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	position INTEGER NOT NULL,
	type TEXT NOT NULL,
	content JSONB NOT NULL,
	notes TEXT,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_slides PRIMARY KEY (id),
	CONSTRAINT ck_slides_type CHECK (type IN ('title', 'content', 'image', 'code', 'split')),
	CONSTRAINT fk_slides_presentation_id FOREIGN KEY(presentation_id) REFERENCES byodb.presentations (id) ON DELETE CASCADE
);

CREATE INDEX ix_slides_presentation ON byodb.slides (presentation_id);

CREATE INDEX ix_slides_presentation_position ON byodb.slides (presentation_id, position);

CREATE INDEX ix_slides_user ON byodb.slides (user_id);

CREATE TABLE byodb.snippets (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	title TEXT NOT NULL,
	content TEXT NOT NULL,
	language TEXT,
	source_message_id UUID,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_snippets PRIMARY KEY (id),
	CONSTRAINT fk_snippets_source_message_id FOREIGN KEY(source_message_id) REFERENCES byodb.messages (id) ON DELETE SET NULL
);

CREATE INDEX ix_snippets_source ON byodb.snippets (source_message_id);

CREATE INDEX ix_snippets_user ON byodb.snippets (user_id);

CREATE TABLE byodb.sources (
	id UUID NOT NULL,
	message_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	url TEXT NOT NULL,
	title TEXT,
	snippet TEXT,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_sources PRIMARY KEY (id),
	CONSTRAINT fk_sources_message_id FOREIGN KEY(message_id) REFERENCES byodb.messages (id) ON DELETE CASCADE
);

CREATE INDEX ix_sources_message ON byodb.sources (message_id);

CREATE INDEX ix_sources_user ON byodb.sources (user_id);

CREATE TABLE byodb.tasks (
	id UUID NOT NULL,
	user_id TEXT NOT NULL,
	title TEXT NOT NULL,
	description TEXT,
	status TEXT NOT NULL,
	priority TEXT,
	due_date TIMESTAMP WITH TIME ZONE,
	completed_at TIMESTAMP WITH TIME ZONE,
	source_conversation_id UUID,
	source_message_id UUID,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_tasks PRIMARY KEY (id),
	CONSTRAINT ck_tasks_status CHECK (status IN ('todo', 'in_progress', 'done', 'cancelled')),
	CONSTRAINT ck_tasks_priority CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
	CONSTRAINT fk_tasks_source_conversation_id FOREIGN KEY(source_conversation_id) REFERENCES byodb.conversations (id) ON DELETE SET NULL,
	CONSTRAINT fk_tasks_source_message_id FOREIGN KEY(source_message_id) REFERENCES byodb.messages (id) ON DELETE SET NULL
);

CREATE INDEX ix_tasks_source_conversation ON byodb.tasks (source_conversation_id);

CREATE INDEX ix_tasks_source_message ON byodb.tasks (source_message_id);

CREATE INDEX ix_tasks_user ON byodb.tasks (user_id);

CREATE INDEX ix_tasks_user_due ON byodb.tasks (user_id, due_date);

CREATE INDEX ix_tasks_user_status ON byodb.tasks (user_id, status);

CREATE TABLE byodb.tool_calls (
	id UUID NOT NULL,
	message_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	tool_name TEXT NOT NULL,
	tool_args JSONB NOT NULL,
	result JSONB,
	status TEXT NOT NULL,
	error TEXT,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_tool_calls PRIMARY KEY (id),
	CONSTRAINT ck_tool_calls_status CHECK (status IN ('pending', 'complete', 'error')),
	CONSTRAINT fk_tool_calls_message_id FOREIGN KEY(message_id) REFERENCES byodb.messages (id) ON DELETE CASCADE
);

CREATE INDEX ix_tool_calls_message ON byodb.tool_calls (message_id);

CREATE INDEX ix_tool_calls_user ON byodb.tool_calls (user_id);

CREATE TABLE byodb.task_tags (
	id UUID NOT NULL,
	task_id UUID NOT NULL,
	tag_id UUID NOT NULL,
	user_id TEXT NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT pk_task_tags PRIMARY KEY (id),
	CONSTRAINT uq_task_tags_task_id_tag_id UNIQUE (task_id, tag_id),
	CONSTRAINT fk_task_tags_task_id FOREIGN KEY(task_id) REFERENCES byodb.tasks (id) ON DELETE CASCADE,
	CONSTRAINT fk_task_tags_tag_id FOREIGN KEY(tag_id) REFERENCES byodb.tags (id) ON DELETE CASCADE
);

CREATE INDEX ix_task_tags_tag ON byodb.task_tags (tag_id);

CREATE INDEX ix_task_tags_task ON byodb.task_tags (task_id);

CREATE INDEX ix_task_tags_user ON byodb.task_tags (user_id);

