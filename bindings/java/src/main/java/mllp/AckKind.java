package mllp;

/**
 * The kind of an acknowledgement an {@link MLLPClient} received (the MLLP_ACK_* numbers of
 * mllp.h): an HL7 MSA-1 code, a commit ACK/NAK byte (AckMode=MLLP), or {@link #NONE} when nothing
 * was expected or received.
 */
public enum AckKind {
    /** MSA-1 AA: application accept. */
    AA(0),
    /** MSA-1 AE: application error. */
    AE(1),
    /** MSA-1 AR: application reject. */
    AR(2),
    /** MSA-1 CA: commit accept. */
    CA(3),
    /** MSA-1 CE: commit error. */
    CE(4),
    /** MSA-1 CR: commit reject. */
    CR(5),
    /** The MLLP commit acknowledgement byte (0x06). */
    ACK(6),
    /** The MLLP negative commit acknowledgement byte (0x15). */
    NAK(7),
    /** Nothing expected (AckMode=None) or nothing received. */
    NONE(-1);

    private final int code;

    AckKind(int code) {
        this.code = code;
    }

    /** The library's number (MLLP_ACK_*). */
    public int code() {
        return code;
    }

    /** True for AA, CA and ACK: the message was accepted. */
    public boolean isPositive() {
        return this == AA || this == CA || this == ACK;
    }

    /** The kind with this number; {@link #NONE} for a number the binding does not know. */
    public static AckKind fromCode(int code) {
        for (AckKind k : values()) {
            if (k.code == code) {
                return k;
            }
        }
        return NONE;
    }
}
