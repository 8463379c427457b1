-- The text of each job's file as last loaded, so that `treasury jobs diff` can say field
-- by field what a reviewed change does. NULL for versions recorded before this column.
ALTER TABLE job_versions ADD COLUMN source TEXT;
