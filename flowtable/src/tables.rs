//! The flow tables: one [`Classifier`] per OpenFlow table (0-254).
//!
//! A packet starts in table 0. A miss there means `normal` (the learning switch, xvs's
//! default); a miss in any later table means drop, as OVS's default table-miss. Rules move a
//! packet on with `resubmit(,N)` and `goto_table:N`; the pipeline walks the tables and the
//! flow cache keeps the whole walk's outcome as one decision.

use crate::classifier::Classifier;
use crate::key::FlowKey;
use crate::rule::{Match, Rule};

/// Rules by table.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Index = table number; grown as rules arrive, empty tables at the end trimmed.
    tables: Vec<Classifier>,
}

impl Tables {
    /// No rules.
    pub fn new() -> Tables {
        Tables::default()
    }

    /// The number of rules in every table.
    pub fn len(&self) -> usize {
        self.tables.iter().map(Classifier::len).sum()
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(Classifier::is_empty)
    }

    /// The classifier of `table`, if it holds rules.
    pub fn table(&self, table: u8) -> Option<&Classifier> {
        self.tables
            .get(usize::from(table))
            .filter(|c| !c.is_empty())
    }

    /// The numbers of the tables that hold rules.
    pub fn numbers(&self) -> impl Iterator<Item = u8> + '_ {
        self.tables
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .map(|(i, _)| i as u8)
    }

    /// The rule that decides for `key` in `table` (see [`Classifier::lookup`]).
    #[inline]
    pub fn lookup(&self, table: u8, key: &FlowKey) -> Option<&Rule> {
        self.tables.get(usize::from(table))?.lookup(key)
    }

    /// The rule with this id, in whichever table.
    pub fn get(&self, id: u32) -> Option<&Rule> {
        self.tables.iter().find_map(|c| c.get(id))
    }

    /// Every rule, by table, then as [`Classifier::iter`] orders them.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.tables.iter().flat_map(|c| c.iter())
    }

    /// Adds a rule to its table, replacing one of the same match and priority there (see
    /// [`Classifier::insert`]).
    ///
    /// # Panics
    /// If the rule's id is already used by another rule of any table.
    pub fn insert(&mut self, rule: Rule) -> Option<Rule> {
        let table = usize::from(rule.table);
        if let Some(holder) = self.get(rule.id) {
            assert!(
                holder.table == rule.table,
                "rule id {} is already used by another rule",
                rule.id
            );
        }
        if self.tables.len() <= table {
            self.tables.resize_with(table + 1, Classifier::new);
        }
        self.tables[table].insert(rule)
    }

    /// Removes the rule of exactly this table, match and priority.
    pub fn remove_strict(&mut self, table: u8, pattern: &Match, priority: u16) -> Option<Rule> {
        let removed = self
            .tables
            .get_mut(usize::from(table))?
            .remove_strict(pattern, priority);
        self.trim();
        removed
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.tables.clear();
    }

    fn trim(&mut self) {
        while self.tables.last().is_some_and(Classifier::is_empty) {
            self.tables.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Action;

    fn rule(id: u32, table: u8, priority: u16) -> Rule {
        Rule {
            id,
            table,
            priority,
            pattern: Match::ANY,
            actions: vec![Action::Output(id as u16)],
        }
    }

    #[test]
    fn tables_are_looked_up_apart() {
        let mut t = Tables::new();
        t.insert(rule(1, 0, 10));
        t.insert(rule(2, 3, 10));
        t.insert(rule(3, 3, 20));
        let key = FlowKey::default();
        assert_eq!(t.lookup(0, &key).map(|r| r.id), Some(1));
        assert_eq!(t.lookup(3, &key).map(|r| r.id), Some(3));
        assert_eq!(t.lookup(1, &key), None);
        assert_eq!(t.lookup(200, &key), None);
        assert_eq!(t.numbers().collect::<Vec<_>>(), [0, 3]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(2).map(|r| r.table), Some(3));
        assert_eq!(t.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 3, 2]);
        // Same match and priority in another table is another rule.
        assert!(t.insert(rule(4, 0, 20)).is_none());
        assert_eq!(t.remove_strict(3, &Match::ANY, 20).map(|r| r.id), Some(3));
        assert_eq!(t.remove_strict(3, &Match::ANY, 10).map(|r| r.id), Some(2));
        assert_eq!(t.numbers().collect::<Vec<_>>(), [0]);
        t.clear();
        assert!(t.is_empty());
    }

    #[test]
    #[should_panic(expected = "already used")]
    fn an_id_is_unique_across_tables() {
        let mut t = Tables::new();
        t.insert(rule(1, 0, 10));
        t.insert(rule(1, 2, 10));
    }
}
