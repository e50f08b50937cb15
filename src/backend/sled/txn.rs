//! The sled transaction adapter: the shared write logic of
//! [`ops`](super::super::ops) run inside one sled transaction over the
//! four trees a write can touch.

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional as _, TransactionalTree,
    UnabortableTransactionError,
};

use super::super::ops::{Tree, Trees};
use super::storage;
use crate::error::{Error, Result};
use crate::token::SessionId;

/// The trees a write changes in one transaction.
#[derive(Debug, Clone)]
pub(super) struct WriteTrees {
    pub sessions: sled::Tree,
    pub expiry: sled::Tree,
    pub users: sled::Tree,
    pub quarantine: sled::Tree,
}

impl WriteTrees {
    /// Runs `f` in one transaction over the four trees. sled may run it more
    /// than once (after a conflict with another transaction); it must
    /// compute everything afresh each time. A storage failure inside `f`
    /// aborts the whole transaction; an error of one operation is `f`'s to
    /// return in its `T`.
    pub fn transaction<T>(
        &self,
        f: impl Fn(&Txn<'_>) -> std::result::Result<T, UnabortableTransactionError>,
    ) -> Result<T> {
        let result = (&self.sessions, &self.expiry, &self.users, &self.quarantine).transaction(
            |(sessions, expiry, users, quarantine)| {
                let txn = Txn {
                    sessions,
                    expiry,
                    users,
                    quarantine,
                };
                f(&txn).map_err(ConflictableTransactionError::<std::convert::Infallible>::from)
            },
        );
        match result {
            Ok(out) => Ok(out),
            Err(TransactionError::Storage(e)) => Err(storage(e)),
            Err(TransactionError::Abort(never)) => match never {},
        }
    }
}

/// The four trees as seen from inside one transaction.
pub(super) struct Txn<'a> {
    sessions: &'a TransactionalTree,
    expiry: &'a TransactionalTree,
    users: &'a TransactionalTree,
    quarantine: &'a TransactionalTree,
}

/// Inside a transaction: a storage failure ends the whole transaction; an
/// error of one operation (a corrupt record) ends only that operation.
pub(super) enum TxError {
    Storage(UnabortableTransactionError),
    Op(Error),
}

impl From<UnabortableTransactionError> for TxError {
    fn from(e: UnabortableTransactionError) -> Self {
        TxError::Storage(e)
    }
}

impl TxError {
    /// Splits the two: `Err` ends the transaction, `Ok(Err)` only the one
    /// operation.
    pub fn split<T>(
        result: std::result::Result<T, TxError>,
    ) -> std::result::Result<Result<T>, UnabortableTransactionError> {
        match result {
            Ok(done) => Ok(Ok(done)),
            Err(TxError::Op(e)) => Ok(Err(e)),
            Err(TxError::Storage(e)) => Err(e),
        }
    }
}

impl Trees for Txn<'_> {
    type Error = TxError;
    type Bytes = sled::IVec;

    fn abort(e: Error) -> TxError {
        TxError::Op(e)
    }
    fn session(&self, id: &SessionId) -> std::result::Result<Option<sled::IVec>, TxError> {
        Ok(self.sessions.get(id.as_bytes())?)
    }
    fn set_session(&self, id: &SessionId, value: &[u8]) -> std::result::Result<(), TxError> {
        self.sessions.insert(&id.as_bytes()[..], value)?;
        Ok(())
    }
    fn remove_session(&self, id: &SessionId) -> std::result::Result<(), TxError> {
        self.sessions.remove(&id.as_bytes()[..])?;
        Ok(())
    }
    fn set_expiry(&self, key: [u8; 40]) -> std::result::Result<(), TxError> {
        self.expiry.insert(&key[..], &[][..])?;
        Ok(())
    }
    fn remove_expiry(&self, key: [u8; 40]) -> std::result::Result<(), TxError> {
        self.expiry.remove(&key[..])?;
        Ok(())
    }
    fn set_user(&self, key: Vec<u8>) -> std::result::Result<(), TxError> {
        self.users.insert(key, &[][..])?;
        Ok(())
    }
    fn remove_user(&self, key: Vec<u8>) -> std::result::Result<(), TxError> {
        self.users.remove(key)?;
        Ok(())
    }
    fn remove_raw(&self, tree: Tree, key: &[u8]) -> std::result::Result<(), TxError> {
        let tree = match tree {
            Tree::Sessions => self.sessions,
            Tree::Expiry => self.expiry,
            Tree::Users => self.users,
        };
        tree.remove(key)?;
        Ok(())
    }
    fn session_raw(&self, key: &[u8]) -> std::result::Result<Option<sled::IVec>, TxError> {
        Ok(self.sessions.get(key)?)
    }
    fn quarantine(&self, key: &[u8], value: &[u8]) -> std::result::Result<(), TxError> {
        self.quarantine.insert(key, value)?;
        Ok(())
    }
    fn may_lag(&self) -> bool {
        // The first write path, and repairs: entries move with expiry.
        false
    }
}
