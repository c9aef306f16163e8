//! What the engine's end-to-end tests share.

use spamward_engine::{ComponentCache, LoadedRule, RuleOrigin, Sandbox, bundled_rules, load};

/// The bundled rule `name` (its directory under `rules/`), compiled alone:
/// the others are not needed.
pub fn bundled_rule(sandbox: &Sandbox, name: &str) -> LoadedRule {
    let (_, bytes) = bundled_rules()
        .iter()
        .find(|(stem, _)| *stem == name)
        .unwrap_or_else(|| panic!("{name} is bundled"));
    let rule = load(
        sandbox,
        &ComponentCache::disabled(),
        bytes,
        RuleOrigin::Bundled,
    )
    .unwrap();
    assert_eq!(rule.meta.name, name);
    rule
}
