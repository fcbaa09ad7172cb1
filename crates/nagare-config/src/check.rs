pub fn check(_root: &crate::Element) -> Result<Vec<crate::Warning>, crate::ConfigError> {
    Ok(Vec::new())
}
