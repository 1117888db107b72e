-- A training dataset's name is reused only on purpose: fstore.create_training_table and
-- fstore.build_training_table take p_version / p_new_version, and the rule is kept where
-- versions are allocated (fstore.store_training_table, under the project's lock). The
-- functions with the old signatures go; sql/functions/75 creates the new ones.
drop function if exists fstore.create_training_table(text,regclass,text[],text,interval,boolean,jsonb,text[],jsonb,bigint,text);
drop function if exists fstore.build_training_table(text,regclass,text[],text,interval,boolean,jsonb,text[],jsonb,bigint,text);
