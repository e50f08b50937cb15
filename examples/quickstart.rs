//! The README's first command: makes a session token, writes its
//! `Set-Cookie`, reads it back from a browser-shaped `Cookie` header, and
//! shows that forged and tampered cookies are "no session".

use std::time::Duration;

use sessiondb::{CookieConfig, Key, KeyRing, Purpose, SessionId};

fn main() -> sessiondb::Result<()> {
    let ring = KeyRing::new(1, Key::generate()?);
    let cookies = CookieConfig::default();

    let id = SessionId::generate()?;
    let token = ring.sign(Purpose::Session, &id);
    let set_cookie = cookies.set_cookie(&token, Duration::from_secs(30 * 60));
    println!("new session {}", id.hint());
    println!("Set-Cookie: {set_cookie}");

    // What the browser sends back: its other cookies, and ours.
    let pair = set_cookie.split(';').next().unwrap_or_default();
    let request = format!("theme=dark; _ga=GA1.2.3; {pair}; lang=en");
    let found = cookies.find_session(&ring, [request.as_bytes()]);
    println!(
        "Cookie header with our cookie  -> {}",
        found.map_or("no session".to_owned(), |id| format!(
            "session {}",
            id.hint()
        ))
    );

    let mut tampered = request.clone().into_bytes();
    let last = tampered.len() - "; lang=en".len() - 1;
    tampered[last] ^= 1;
    let forged = format!("{}={}", cookies.name(), "A".repeat(92));
    for (what, header) in [("tampered", tampered), ("forged", forged.into_bytes())] {
        let found = cookies.find_session(&ring, [&header[..]]);
        println!(
            "Cookie header with a {what:<8} -> {}",
            found.map_or("no session".to_owned(), |id| format!(
                "session {}",
                id.hint()
            ))
        );
    }

    println!("logout Set-Cookie: {}", cookies.removal());
    Ok(())
}
