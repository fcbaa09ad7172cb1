//! Fluentd v1 configuration language: grammar, element tree, includes, embedded Ruby subset, typed values.
